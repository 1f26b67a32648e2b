"""Property tests: no input makes the message-content modules fail with anything but ImapBad
(or the typed ImapNo for BADCHARSET / UNKNOWN-CTE)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsuite.imap.commands.sort import base_subject
from mailsuite.imap.fetch import fetch_response, parse_fetch_items
from mailsuite.imap.parser import Atom, ImapBad, ImapNo, parse_line
from mailsuite.imap.search import SearchContext, evaluate, parse_search_command
from mailsuite.imap.structure_wire import (
    bodystructure,
    bodystructure_bytes,
    envelope_bytes,
    envelope_value,
    format_structure,
)
from mailsuite.message.addresses import parse_addresses
from mailsuite.message.content import MessageContent
from mailsuite.message.decode import decode_header_value
from mailsuite.message.headers import filter_fields, first_value
from mailsuite.message.params import parse_params
from mailsuite.message.structure import find_part, iter_leaves
from mailsuite.message.text import part_text
from tests.imap import msg_fixtures as F

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Bytes that look like mail: header-ish lines, boundaries, encodings, 8-bit, line ends.
_PIECES = [
    b"Content-Type: multipart/mixed; boundary=b\n",
    b"Content-Type: message/rfc822\n",
    b"Content-Type: text/plain; charset=utf-8\n",
    b"Content-Transfer-Encoding: base64\n",
    b"Content-Transfer-Encoding: quoted-printable\n",
    b"Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x\n",
    b"From: a <b@c>, (x) d@e, g: h@i;\n",
    b"Subject: =?utf-8?q?=C3=A9?= \xc3\xa9\n",
    b"--b\n",
    b"--b--\n",
    b"\n",
    b"\r\n",
    b" folded\n",
    b"aGVsbG8=\n",
    b"=41=\n",
    b"\x00\xff",
    b"(",
    b'"',
    b"<",
]
mailish = st.lists(st.sampled_from(_PIECES) | st.binary(max_size=20), max_size=30).map(b"".join)


@SETTINGS
@given(mailish)
def test_mime_never_raises_and_offsets_stay_in_range(raw):
    c = MessageContent(raw)
    wire = c.wire()
    root = c.tree()
    stack = [root]
    while stack:
        p = stack.pop()
        assert 0 <= p.start <= p.body_start <= p.end <= len(wire)
        stack.extend(p.children)
        if p.message is not None:
            stack.append(p.message)
    envelope_bytes(c.envelope())
    bodystructure_bytes(c.tree(), True)
    bodystructure_bytes(c.tree(), False)
    for path in [(1,), (1, 1), (2,), (2, 1, 1)]:
        find_part(root, path)
    for part in iter_leaves(root):
        part_text(wire, part)
    base_subject(first_value(c.fields(), b"subject"))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes_through_every_content_view(raw):
    c = MessageContent(raw)
    envelope_bytes(c.envelope())
    bodystructure_bytes(c.tree())
    filter_fields(c.header(), {b"from", b"subject"}, False)
    decode_header_value(raw)
    parse_addresses(raw)
    parse_params(raw)


_FETCH_WORDS = [
    "FLAGS",
    "UID",
    "BODY",
    "BODY[]",
    "BODY.PEEK[TEXT]",
    "BODY[1.2.MIME]",
    "BODY[HEADER.FIELDS (A B)]",
    "BINARY[1]",
    "BINARY.SIZE[2]",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "RFC822",
    "ALL",
    "FAST",
    "MODSEQ",
    "BODY[]<0.5>",
    "BODY[3.TEXT]<2.1>",
    "BODY[",
    "X",
    "1",
    "(",
    ")",
    "CHANGEDSINCE",
    "VANISHED",
]


def _tokens(words):
    leaf = st.sampled_from(words).map(Atom) | st.binary(max_size=5)
    return st.lists(
        st.recursive(leaf, lambda inner: st.lists(inner, max_size=4), max_leaves=8), max_size=4
    )


@SETTINGS
@given(_tokens(_FETCH_WORDS))
def test_fetch_item_parsing_raises_only_imapbad(args):
    try:
        req = parse_fetch_items(args)
    except ImapBad:
        return

    class Msg:
        uid, size, wire_size, internaldate, modseq, flags = 1, 10, 12, 0.0, 1, frozenset()

    try:
        fetch_response(req, 1, Msg(), frozenset(), lambda m: MessageContent(F.NESTED))
    except ImapNo as e:
        assert e.code == "UNKNOWN-CTE"


_SEARCH_WORDS = [
    "ALL",
    "SEEN",
    "NOT",
    "OR",
    "FROM",
    "SUBJECT",
    "BODY",
    "TEXT",
    "HEADER",
    "UID",
    "1:*",
    "$",
    "2,4:5",
    "LARGER",
    "SMALLER",
    "10",
    "BEFORE",
    "SENTON",
    "1-Jan-2024",
    "KEYWORD",
    "MODSEQ",
    "CHARSET",
    "UTF-8",
    "RETURN",
    "MIN",
    "X",
]


@SETTINGS
@given(_tokens(_SEARCH_WORDS))
def test_search_parsing_raises_only_imapbad_or_badcharset(args):
    try:
        _, prog = parse_search_command(args)
    except ImapBad:
        return
    except ImapNo as e:
        assert e.code.startswith("BADCHARSET")
        return

    class Msg:
        def __init__(self, uid):
            self.uid, self.size, self.wire_size, self.modseq = uid, 100, 110, uid
            self.internaldate, self.flags, self.key = 1.7e9, frozenset({"\\Seen"}), str(uid)

    msgs = [Msg(1), Msg(3)]
    evaluate(prog, msgs, SearchContext(content_loader=lambda m: MessageContent(F.NESTED)))


@SETTINGS
@given(st.binary(max_size=80))
def test_raw_command_lines_through_parser_and_search(line):
    try:
        cmd = parse_line(b"a SEARCH " + line.replace(b"\r", b"").replace(b"\n", b""))
    except ImapBad:
        return
    try:
        parse_search_command(cmd.args)
    except (ImapBad, ImapNo):
        pass
    try:
        parse_fetch_items(cmd.args)
    except ImapBad:
        pass


@SETTINGS
@given(mailish)
def test_direct_envelope_serializer_matches_the_structure_form(raw):
    env = MessageContent(raw).envelope()
    assert envelope_bytes(env) == format_structure(envelope_value(env), False)


# What a body description reports, with the comments, repeats and oddities it must survive.
_DESCRIBED_PIECES = _PIECES + [
    b"MIME-Version: 1.0\n",
    b"Content-Type: text/plain\n",
    b'Content-Type: image/png; name="a \\"b\\" c"\n',
    b'Content-Type: multipart/alternative; boundary=b; x="\xc3\xa9"\n',
    b"Content-Transfer-Encoding: (c) 8bit\n",
    b"Content-Transfer-Encoding: x y\n",
    b"Content-ID: <id@x>\n",
    b'Content-Description: a "quoted" \\ one\n',
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n",
    b"Content-Language: en (English), de\n",
    b"Content-Language: en fr\n",
    b"Content-Location: http://example.test/a\n",
    b"Content-Disposition: inline\n",
    b"Content-Disposition: ; x=y\n",
    b"To: g: ;\n",
]
described_mailish = st.lists(
    st.sampled_from(_DESCRIBED_PIECES) | st.binary(max_size=20), max_size=40
).map(b"".join)


@SETTINGS
@given(described_mailish)
def test_direct_body_serializer_matches_the_structure_form(raw):
    tree = MessageContent(raw).tree()
    for extensible in (True, False):
        assert bodystructure_bytes(tree, extensible) == format_structure(
            bodystructure(tree, extensible)
        )


@SETTINGS
@given(described_mailish)
def test_direct_envelope_serializer_matches_the_structure_form_with_odd_fields(raw):
    env = MessageContent(raw).envelope()
    assert envelope_bytes(env) == format_structure(envelope_value(env), False)


# Random well-formed MIME trees: every part must come back byte for byte at its number.
_line = st.text(alphabet="abcxyz -=.", min_size=0, max_size=12).map(lambda s: s.encode())


def _tree(depth=0):
    leaf = st.lists(_line, min_size=0, max_size=4).map(lambda ls: ("leaf", b"\r\n".join(ls)))
    if depth >= 3:
        return leaf
    return st.one_of(
        leaf,
        st.lists(st.deferred(lambda: _tree(depth + 1)), min_size=1, max_size=3).map(
            lambda kids: ("multi", kids)
        ),
        st.deferred(lambda: _tree(depth + 1)).map(lambda inner: ("message", inner)),
    )


def _render(node, counter):
    """(entity bytes with header, expected part bodies by path suffix)."""
    kind, payload = node
    if kind == "leaf":
        return b"Content-Type: text/plain\r\n\r\n" + payload, payload
    if kind == "message":
        inner, _ = _render(payload, counter)
        return b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + inner, None
    counter[0] += 1
    b = b"bnd%d" % counter[0]
    body = b"preamble\r\n"
    for child in payload:
        ent, _ = _render(child, counter)
        body += b"--" + b + b"\r\n" + ent + b"\r\n"
    body += b"--" + b + b"--\r\nepilogue\r\n"
    return b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n' + body, None


def _check(node, part, wire):
    kind, payload = node
    if kind == "leaf":
        assert wire[part.body_start : part.end] == payload
        assert part.ctype == "text"
    elif kind == "message":
        assert part.is_message
        _check(payload, part.message, wire)
    else:
        assert part.is_multipart and len(part.children) == len(payload)
        for child_node, child_part in zip(payload, part.children, strict=True):
            _check(child_node, child_part, wire)


@SETTINGS
@given(_tree())
def test_generated_mime_trees_parse_back_exactly(tree):
    raw, _ = _render(tree, [0])
    raw = b"Subject: generated\r\nMIME-Version: 1.0\r\n" + raw
    for stored in (raw, raw.replace(b"\r\n", b"\n")):
        c = MessageContent(stored)
        _check(tree, c.tree(), c.wire())
        assert c.wire() == raw
