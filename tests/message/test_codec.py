"""mailsuite.message.codec: a tree kept by a cache describes the message as a fresh parse does."""

from __future__ import annotations

import pytest

from mailsuite.message.codec import (
    CorruptEnvelope,
    CorruptTree,
    dump_envelope,
    dump_tree,
    load_envelope,
    load_tree,
)
from mailsuite.message.content import MessageContent
from mailsuite.message.envelope import envelope
from mailsuite.message.structure import MimePart, find_part, iter_leaves
from tests.imap import msg_fixtures as F
from tests.imap.msg_dovecot_cases import CASES

SAMPLES = {n: getattr(F, n) for n in dir(F) if n.isupper() and isinstance(getattr(F, n), bytes)}
SAMPLES.update({f"dovecot:{n}": c[0] for n, c in CASES.items()})


def _shape(part: MimePart) -> tuple:
    """Everything a description of the part uses, recursively."""
    return (
        part.start,
        part.body_start,
        part.end,
        part.lines,
        part.ctype,
        part.csubtype,
        part.type_raw,
        part.subtype_raw,
        part.params,
        part.has_content_type,
        part.closed_at_end,
        part.mime_headers,
        part.encoding_raw,
        part.transfer_encoding,
        part.get(b"content-id"),
        part.get(b"content-description"),
        part.get(b"content-md5"),
        part.last(b"content-disposition"),
        part.get(b"content-language"),
        part.get(b"content-location"),
        [_shape(c) for c in part.children],
        None if part.message is None else (envelope(part.message.fields), _shape(part.message)),
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_loaded_tree_equals_the_parsed_one(name):
    tree = MessageContent(SAMPLES[name]).tree()
    loaded = load_tree(dump_tree(tree))
    assert _shape(loaded) == _shape(tree)


def test_only_describing_fields_are_kept():
    tree = MessageContent(F.NESTED).tree()
    loaded = load_tree(dump_tree(tree))
    assert all(n.startswith(b"content-") for n, _ in loaded.fields)
    inner = find_part(loaded, (2,)).message
    assert {n for n, _ in inner.fields} & {b"from", b"subject"}


def test_lines_counted_for_text_and_message_parts():
    c = MessageContent(F.NESTED)
    w = c.wire()
    for part in iter_leaves(c.tree()):
        if part.ctype == "text" or part.is_message:
            assert part.lines == w.count(b"\n", part.body_start, part.end)


@pytest.mark.parametrize(
    "data", [b"", b"garbage", b"\xff" * 20, dump_tree(MimePart(0, 0, 0, []))[:-3]]
)
def test_bytes_of_another_layout_raise_corrupt_tree(data):
    with pytest.raises(CorruptTree):
        load_tree(data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_loaded_envelope_equals_the_parsed_one(name):
    env = MessageContent(SAMPLES[name]).envelope()
    assert load_envelope(dump_envelope(env)) == env


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\xff" * 20,
        dump_envelope(envelope([]))[:-3],
        dump_tree(MimePart(0, 0, 0, [])),
    ],
)
def test_bytes_of_another_layout_raise_corrupt_envelope(data):
    with pytest.raises(CorruptEnvelope):
        load_envelope(data)
