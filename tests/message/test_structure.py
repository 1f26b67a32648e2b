"""mailsuite.message.structure: wire offsets and part numbering (RFC 3501 §6.4.5 numbers)."""

from __future__ import annotations

from mailsuite.message.codec import dump_tree
from mailsuite.message.content import MessageContent
from mailsuite.message.lines import to_wire
from mailsuite.message.structure import find_part
from tests.imap import msg_fixtures as F


def part_bytes(raw: bytes, path: tuple[int, ...]) -> tuple[bytes, bytes]:
    c = MessageContent(raw)
    p = find_part(c.tree(), path)
    assert p is not None, path
    w = c.wire()
    return w[p.start : p.body_start], w[p.body_start : p.end]


def test_lf_and_crlf_storage_give_identical_wire_bytes_and_structure():
    lf = MessageContent(F.NESTED)
    crlf = MessageContent(F.NESTED.replace(b"\n", b"\r\n"))
    assert lf.wire() == crlf.wire()
    assert b"\n" not in lf.wire().replace(b"\r\n", b"")
    assert dump_tree(lf.tree()) == dump_tree(crlf.tree())
    assert lf.header() == crlf.header()


def test_to_wire_makes_every_line_end_crlf():
    assert to_wire(b"a\nb\r\nc\n") == b"a\r\nb\r\nc\r\n"  # mixed
    assert to_wire(b"a\r\nb\r\n") == b"a\r\nb\r\n"  # already CRLF: unchanged
    assert to_wire(b"a\r\r\nb\rc\r\n") == b"a\r\r\nb\rc\r\n"  # a lone CR stays
    assert to_wire(b"a\r\nb\n\r\n") == b"a\r\nb\r\n\r\n"
    assert to_wire(b"no line end") == b"no line end"
    assert to_wire(bytearray(b"a\r\n")) == b"a\r\n"


def test_part_numbers_into_multipart_and_encapsulated_message():
    assert part_bytes(F.NESTED, (1, 1)) == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        b"Caf=C3=A9 au lait",
    )
    assert part_bytes(F.NESTED, (1, 2))[1] == "<p>Café</p>".encode()
    head, body = part_bytes(F.NESTED, (2,))
    assert head == b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    assert body.startswith(b"From: Carol") and body.endswith(b"inner body zebracorn")
    # 2.1 is the encapsulated message's only (non-multipart) part: its body
    assert part_bytes(F.NESTED, (2, 1))[1] == b"inner body line 1\r\ninner body zebracorn"
    assert part_bytes(F.NESTED, (3,))[1] == b"JVBERi0xLjQK"
    c = MessageContent(F.NESTED)
    assert find_part(c.tree(), (4,)) is None
    assert find_part(c.tree(), (1, 3)) is None
    assert find_part(c.tree(), (2, 2)) is None


def test_single_part_message_has_only_part_one():
    c = MessageContent(F.SIMPLE)
    p = find_part(c.tree(), (1,))
    assert p is c.tree()
    assert find_part(c.tree(), (2,)) is None


def test_missing_final_boundary_ends_last_part_at_end_of_message():
    _, body = part_bytes(F.MISSING_FINAL, (2,))
    assert body == b"second, never closed\r\n"
    assert part_bytes(F.MISSING_FINAL, (1,))[1] == b"first"


def test_boundary_that_prefixes_a_longer_line_is_not_a_delimiter():
    one = part_bytes(F.PREFIX_BOUNDARY, (1,))[1]
    assert one == b"line with --abc inside\r\n--abc not a delimiter"
    # the delimiter line "--ab  " carries transport padding
    assert part_bytes(F.PREFIX_BOUNDARY, (2,))[1] == b"two"
