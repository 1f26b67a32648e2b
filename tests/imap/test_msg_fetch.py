"""mailsuite.imap.fetch: FETCH item grammar (RFC 3501 §6.4.5, RFC 3516, RFC 7162) and responses."""

from __future__ import annotations

import time

import pytest

from mailsuite.imap.fetch import (
    FetchRenderer,
    fetch_response,
    format_internaldate,
    parse_fetch_items,
)
from mailsuite.imap.parser import Atom, ImapBad, ImapNo, parse_line
from mailsuite.imap.structure_wire import bodystructure_bytes, envelope_bytes
from mailsuite.message.content import MessageContent
from tests.imap import msg_fixtures as F


class Msg:
    """The store Message fields FETCH reads."""

    def __init__(self, raw: bytes, uid: int = 7, modseq: int = 42):
        self.uid = uid
        self.key = f"key{uid}"
        self.size = len(raw)
        self.wire_size = len(raw) + raw.count(b"\n") - raw.count(b"\r\n")
        self.internaldate = 1700000000.0
        self.modseq = modseq
        self.flags = frozenset({"\\Seen"})


def items(text: str, uid: bool = False):
    cmd = parse_line(b"a FETCH 1 " + text.encode())
    return parse_fetch_items(cmd.args[1:], uid_command=uid)


def respond(text: str, raw: bytes, uid: bool = False, **kw) -> bytes:
    req = items(text, uid)
    msg = Msg(raw)
    return b"".join(fetch_response(req, 3, msg, msg.flags, lambda m: MessageContent(raw), **kw))


def test_macros_expand_to_rfc3501_items():
    assert [i.kind for i in items("ALL").items] == [
        "FLAGS",
        "INTERNALDATE",
        "RFC822.SIZE",
        "ENVELOPE",
    ]
    assert [i.kind for i in items("FAST").items] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert [i.kind for i in items("FULL").items][-1] == "BODY"


@pytest.mark.parametrize(
    "text",
    [
        "(ALL)",  # macros only stand alone
        "FOO",
        "(FLAGS FOO)",
        "BODY[",
        "BODY[HEADER.FIELDS]",
        "BODY[HEADER.FIELDS ()]",
        "BODY[MIME]",
        "BODY[1.FOO]",
        "BODY[1.]",
        "BODY[.1]",
        "BODY[TEXT.MIME]",
        "BODY[]<.5>",
        "RFC822.PEEK",
        '"FLAGS"',
        "()",
        "(FLAGS) (CHANGEDSINCE x)",
        "(FLAGS) (VANISHED)",
        "(FLAGS) (FOO 1)",
    ],
)
def test_malformed_items_are_bad(text):
    with pytest.raises(ImapBad):
        items(text)


def test_section_forms_parse():
    req = items(
        "(BODY[] BODY.PEEK[HEADER] BODY[TEXT] BODY[1.2.MIME] BODY[2.HEADER.FIELDS.NOT (X-A x-b)]"
        " BODY[3]<10.20> BINARY.PEEK[1] BINARY.SIZE[] RFC822.HEADER)"
    )
    secs = [(i.kind, i.section and i.section.spec(), i.partial, i.peek) for i in req.items]
    assert secs == [
        ("BODY[]", "", None, False),
        ("BODY[]", "HEADER", None, True),
        ("BODY[]", "TEXT", None, False),
        ("BODY[]", "1.2.MIME", None, False),
        ("BODY[]", "2.HEADER.FIELDS.NOT (X-A X-B)", None, False),
        ("BODY[]", "3", (10, 20), False),
        ("BINARY[]", "1", None, True),
        ("BINARY.SIZE", "", None, False),
        ("RFC822.HEADER", None, None, False),
    ]


def test_request_flags_for_the_command_module():
    idx = items("(UID FLAGS RFC822.SIZE INTERNALDATE)")
    assert not idx.needs_content and not idx.sets_seen and not idx.wants_modseq
    hdr = items("(BODY.PEEK[HEADER.FIELDS (FROM)] ENVELOPE BODYSTRUCTURE)")
    assert hdr.needs_content and not hdr.needs_file and not hdr.sets_seen
    body = items("(BODY[TEXT])")
    assert body.needs_file and body.sets_seen
    assert items("RFC822").sets_seen and not items("RFC822.HEADER").sets_seen
    assert items("BINARY[1]").sets_seen and not items("BINARY.PEEK[1]").sets_seen
    assert items("(FLAGS MODSEQ)").wants_modseq
    mod = items("(FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert mod.changedsince == 12345 and mod.vanished and mod.wants_modseq


def test_uid_fetch_always_reports_uid_first():
    req = items("(FLAGS)", uid=True)
    assert [i.kind for i in req.items] == ["UID", "FLAGS"]
    req = items("(FLAGS UID)", uid=True)
    assert [i.kind for i in req.items] == ["FLAGS", "UID"]


def test_index_only_response_touches_no_content():
    req = items("(UID FLAGS RFC822.SIZE MODSEQ)")
    raw = F.SIMPLE
    msg = Msg(raw)

    def loader(m):
        raise AssertionError("content loaded for an index-only FETCH")

    out = b"".join(fetch_response(req, 3, msg, {"\\Seen", "\\Recent"}, loader))
    assert out == (
        b"* 3 FETCH (UID 7 FLAGS (\\Seen \\Recent) RFC822.SIZE %d MODSEQ (42))\r\n" % msg.wire_size
    )


def test_rfc822_size_is_the_crlf_size():
    out = respond("RFC822.SIZE", F.SIMPLE)
    assert out == b"* 3 FETCH (RFC822.SIZE %d)\r\n" % len(MessageContent(F.SIMPLE).wire())


def test_internaldate_format_day_is_zero_padded_like_dovecot():
    ts = time.mktime((2024, 3, 5, 9, 8, 7, 0, 0, -1))
    text = format_internaldate(ts)
    assert text.startswith("05-Mar-2024 09:08:07 ")
    assert text[-5] in "+-" and text[-4:].isdigit()
    out = respond("INTERNALDATE", F.SIMPLE)
    assert out.startswith(b'* 3 FETCH (INTERNALDATE "') and out.endswith(b'")\r\n')


def test_body_peek_answers_as_body_with_literal():
    # names are echoed upper-cased, a quoted one still quoted (Dovecot does the same)
    out = respond('BODY.PEEK[HEADER.FIELDS (SUBJECT "from")]', F.SIMPLE)
    hdr = b"From: Alice Example <alice@example.test>\r\nSubject: Hello there\r\n\r\n"
    assert out == (
        b'* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT "FROM")] {%d}\r\n' % len(hdr) + hdr + b")\r\n"
    )


def test_partial_fetch_reports_origin_and_clips():
    out = respond("BODY.PEEK[TEXT]<3.4>", F.SIMPLE)
    assert out == b"* 3 FETCH (BODY[TEXT]<3> {4}\r\nBob,)\r\n"
    out = respond("BODY.PEEK[TEXT]<1000.10>", F.SIMPLE)
    assert out == b"* 3 FETCH (BODY[TEXT]<1000> {0}\r\n)\r\n"
    # a zero length is accepted (Dovecot does) and reads as empty
    assert respond("BODY.PEEK[TEXT]<0.0>", F.SIMPLE) == b"* 3 FETCH (BODY[TEXT]<0> {0}\r\n)\r\n"


def test_whole_message_header_and_text_partition_the_wire_bytes():
    c = MessageContent(F.NESTED)
    for text, expected in [
        ("BODY.PEEK[]", c.wire()),
        ("RFC822", c.wire()),
        ("BODY.PEEK[HEADER]", c.header()),
        ("RFC822.HEADER", c.header()),
        ("BODY.PEEK[TEXT]", c.wire()[len(c.header()) :]),
        ("RFC822.TEXT", c.wire()[len(c.header()) :]),
    ]:
        out = respond(text, F.NESTED)
        assert out.endswith(b" {%d}\r\n" % len(expected) + expected + b")\r\n"), text


def test_nested_sections_of_encapsulated_message():
    out = respond(
        "(BODY.PEEK[2.HEADER.FIELDS (SUBJECT)] BODY.PEEK[2.TEXT] BODY.PEEK[2.MIME])", F.NESTED
    )
    assert b"BODY[2.HEADER.FIELDS (SUBJECT)] {26}\r\nSubject: inner message\r\n\r\n" in out
    assert b"BODY[2.TEXT] {39}\r\ninner body line 1\r\ninner body zebracorn" in out
    assert b"BODY[2.MIME] {64}\r\nContent-Type: message/rfc822\r\n" in out
    out = respond("BODY.PEEK[2.1]", F.NESTED)
    assert out.endswith(b"{39}\r\ninner body line 1\r\ninner body zebracorn)\r\n")


def test_missing_part_is_empty_as_in_dovecot():
    assert respond("BODY.PEEK[9]", F.NESTED) == b"* 3 FETCH (BODY[9] {0}\r\n)\r\n"
    assert respond("BODY.PEEK[1.1.1.1]", F.NESTED) == b"* 3 FETCH (BODY[1.1.1.1] {0}\r\n)\r\n"
    assert respond("BINARY.SIZE[7]", F.NESTED) == b"* 3 FETCH (BINARY.SIZE[7] 0)\r\n"


def test_a_leaf_is_its_own_part_one_but_a_single_part_message_has_no_part_1_1():
    assert respond("BODY.PEEK[1.1.1]", F.NESTED).endswith(b"{17}\r\nCaf=C3=A9 au lait)\r\n")
    assert respond("BODY.PEEK[1.1]", F.SIMPLE) == b"* 3 FETCH (BODY[1.1] {0}\r\n)\r\n"


def test_nul_in_body_literal_becomes_0x80():
    raw = b"Subject: n\n\na\x00b\n"
    assert respond("BODY.PEEK[TEXT]", raw) == b"* 3 FETCH (BODY[TEXT] {5}\r\na\x80b\r\n)\r\n"


def test_binary_of_a_whole_message_decodes_every_part_and_relabels_it():
    out = respond("BINARY.PEEK[]", F.BASE64_TEXT)
    text = "Hello Zebracorn and Grüße".encode("latin-1")
    assert out.startswith(b"* 3 FETCH (BINARY[] ~{")
    assert b"Content-Transfer-Encoding: binary\r\n\r\n" + text + b")\r\n" in out
    assert b"base64" not in out
    nested = respond("BINARY.PEEK[1]", F.NESTED)
    assert b"Caf\xc3\xa9 au lait\r\n--inner" in nested and b"quoted-printable" not in nested


def test_header_fields_not_keeps_odd_lines_and_adds_blank_line_only_if_present():
    odd = b"Subject: x\nthis is not a header\nFrom: a@b\n\nbody\n"
    assert respond("BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT FROM)]", odd).endswith(
        b"{24}\r\nthis is not a header\r\n\r\n)\r\n"
    )
    assert respond("BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)]", F.HEADER_ONLY).endswith(
        b"{11}\r\nFrom: x@y\r\n)\r\n"
    )


def test_binary_decodes_and_uses_literal8_for_nul():
    out = respond("(BINARY.PEEK[1] BINARY.SIZE[1])", F.BINARY_NUL)
    assert out == b"* 3 FETCH (BINARY[1] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[1] 4)\r\n"
    out = respond("BINARY.PEEK[1.1]", F.NESTED)
    assert out.endswith(b"~{13}\r\nCaf\xc3\xa9 au lait)\r\n")
    # nothing to decode: an ordinary literal
    assert respond("BINARY.PEEK[1.2]", F.NESTED).endswith(b" {12}\r\n<p>Caf\xc3\xa9</p>)\r\n")


def test_binary_of_unknown_encoding_is_no_unknown_cte():
    with pytest.raises(ImapNo) as exc:
        respond("BINARY.PEEK[2]", F.BINARY_NUL)
    assert exc.value.code == "UNKNOWN-CTE"


def test_envelope_and_bodystructure_items():
    c = MessageContent(F.NESTED)
    out = respond("(ENVELOPE BODYSTRUCTURE BODY)", F.NESTED)
    assert out == (
        b"* 3 FETCH (ENVELOPE "
        + envelope_bytes(c.envelope())
        + b" BODYSTRUCTURE "
        + bodystructure_bytes(c.tree(), True)
        + b" BODY "
        + bodystructure_bytes(c.tree(), False)
        + b")\r\n"
    )


def test_flags_and_modseq_added_after_seen_change_and_condstore():
    out = respond("BODY[TEXT]<0.2>", F.SIMPLE, include_flags=True, modseq=True)
    assert out == b"* 3 FETCH (BODY[TEXT]<0> {2}\r\nHi FLAGS (\\Seen) MODSEQ (42))\r\n"


def test_single_atom_argument_is_accepted():
    req = parse_fetch_items(Atom("FLAGS"))
    assert [i.kind for i in req.items] == ["FLAGS"]


@pytest.mark.parametrize(
    "text",
    [
        "(UID FLAGS RFC822.SIZE)",
        "FLAGS",
        "(FLAGS UID)",
        "(UID MODSEQ FLAGS)",
        "(INTERNALDATE RFC822.SIZE)",
        "(RFC822.SIZE INTERNALDATE UID FLAGS MODSEQ)",
    ],
)
@pytest.mark.parametrize("modseq", [False, True])
def test_index_batch_renders_what_one_message_at_a_time_does(text, modseq):
    # The whole-batch renderer is only a faster path: byte for byte the same responses.
    req = items(text, uid=True)
    renderer = FetchRenderer(req)
    assert renderer.columnar
    msgs = [Msg(F.SIMPLE * (1 + i % 3), uid=10 + i, modseq=100 + i) for i in range(5)]
    flags = [frozenset({"\\Seen", "\\Recent"}), frozenset(), frozenset({"$Junk", "\\Flagged"})]
    batch = [(i + 1, m) for i, m in enumerate(msgs)]
    flag_sets = [flags[i % 3] for i in range(5)]
    one_by_one: list[bytes] = []
    for (seq, m), fl in zip(batch, flag_sets, strict=True):
        renderer.render(seq, m, fl, None, one_by_one, modseq=modseq)
    at_once: list[bytes] = []
    renderer.render_batch(batch, flag_sets, at_once, modseq)
    assert b"".join(at_once) == b"".join(one_by_one)


def test_content_items_are_not_columnar():
    assert not FetchRenderer(items("(UID BODY.PEEK[TEXT])")).columnar
    assert not FetchRenderer(items("(FLAGS SAVEDATE)")).columnar


@pytest.mark.parametrize(
    "text",
    [
        "(UID BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])",
        '(FLAGS BODY.PEEK[HEADER.FIELDS.NOT ("X-100%")] ENVELOPE BODYSTRUCTURE)',
        "(ENVELOPE RFC822.SIZE BODY)",
    ],
)
def test_batch_with_memoized_items_renders_what_one_message_at_a_time_does(text):
    req = items(text)
    raws = [F.SIMPLE, F.NESTED, F.SIMPLE + b"more\n"]
    msgs = [Msg(raw, uid=20 + i) for i, raw in enumerate(raws)]
    contents = {m.uid: MessageContent(raw) for m, raw in zip(msgs, raws, strict=True)}
    flag_sets = [m.flags for m in msgs]
    batch = [(i + 1, m) for i, m in enumerate(msgs)]
    one_by_one: list[bytes] = []
    for seq, m in batch:
        FetchRenderer(req).render(seq, m, m.flags, lambda m: contents[m.uid], one_by_one)
    renderer = FetchRenderer(req)
    assert renderer.columnar
    loads = []

    def load(m):
        loads.append(m.uid)
        return contents[m.uid]

    # The first batch renders (and keeps) every item, the second comes from the memo alone.
    for _ in range(2):
        known = renderer.memo_lookup(msgs)
        first = not loads
        assert renderer.misses(msgs, known) == (msgs if first else [])
        at_once: list[bytes] = []
        renderer.render_batch(batch, flag_sets, at_once, False, known, load)
        assert b"".join(at_once) == b"".join(one_by_one)
    assert loads == [m.uid for m in msgs]  # once per message, however many items need it


def test_batch_leaves_out_a_message_whose_file_is_gone():
    req = items("(UID ENVELOPE)")
    msgs = [Msg(F.SIMPLE, uid=u) for u in (1, 2, 3)]

    def load(m):
        if m.uid == 2:
            raise FileNotFoundError(m.key)
        return MessageContent(F.SIMPLE)

    out: list[bytes] = []
    FetchRenderer(req).render_batch(
        [(i + 1, m) for i, m in enumerate(msgs)], [m.flags for m in msgs], out, False, None, load
    )
    lines = b"".join(out).splitlines()
    assert [line.split(b" (UID ")[0] for line in lines] == [b"* 1 FETCH", b"* 3 FETCH"]
