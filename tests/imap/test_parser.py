"""The pure IMAP command reader and tokenizer (RFC 3501 §2.2, §4.3, §9; RFC 7888 LITERAL+)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.imap.parser import (
    Atom,
    Command,
    CommandReader,
    ImapBad,
    NeedContinuation,
    RejectedCommand,
    _flat_args,
    parse_line,
    parse_sequence_set,
    tokenize,
)
from mailsuite.imap.response import (
    decode_mailbox,
    encode_mailbox,
    flag_list,
    format_value,
    quoted_or_literal,
)


def events(data: bytes, reader: CommandReader | None = None) -> list:
    reader = reader or CommandReader()
    reader.feed(data)
    out = []
    while (ev := reader.next_event()) is not None:
        out.append(ev)
    return out


def test_uid_is_folded_into_the_command_name_and_sections_stay_one_atom():
    cmd = parse_line(b"a1 uid fetch 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>)")
    assert cmd == Command(
        "a1",
        "UID FETCH",
        [
            Atom("1:*"),
            [Atom("UID"), Atom("FLAGS"), Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>")],
        ],
    )


def test_quoted_strings_are_bytes_and_nil_is_an_atom():
    cmd = parse_line(b'x LOGIN "us\\"er" NIL')
    assert cmd.args == [b'us"er', Atom("NIL")]
    assert isinstance(cmd.args[1], Atom)


def test_synchronizing_literal_asks_for_continuation_then_completes():
    reader = CommandReader()
    reader.feed(b"a APPEND INBOX (\\Seen) {11}\r\n")
    assert reader.next_event() == NeedContinuation(11)
    assert reader.next_event() is None
    reader.feed(b"hello ")
    assert reader.next_event() is None
    reader.feed(b"world\r\n")
    cmd = reader.next_event()
    assert cmd.args == [Atom("INBOX"), [Atom("\\Seen")], b"hello world"]


def test_non_synchronizing_literal_split_across_packets():
    data = b"b LOGIN {4+}\r\nuser {8+}\r\npass wor\r\nc NOOP\r\n"
    reader = CommandReader()
    out = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (ev := reader.next_event()) is not None:
            out.append(ev)
    assert out == [Command("b", "LOGIN", [b"user", b"pass wor"]), Command("c", "NOOP", [])]


def test_literal8_for_binary_append():
    out = events(b"a APPEND INBOX ~{3+}\r\n\x00\x01\x02\r\n")
    assert out[0].args == [Atom("INBOX"), b"\x00\x01\x02"]


def test_oversized_literal_is_refused_without_reading_it():
    reader = CommandReader(max_literal=100, append_limit=50)
    out = events(b"a APPEND INBOX {60}\r\nb NOOP\r\n", reader)
    assert isinstance(out[0], RejectedCommand) and out[0].tag == "a"
    assert out[0].error.code == "TOOBIG" and not out[0].close
    assert out[1] == Command("b", "NOOP", [])


def test_oversized_non_synchronizing_literal_closes():
    out = events(b"a LOGIN {600+}\r\n", CommandReader(max_literal=100))
    assert out[0].close


def test_too_long_line_is_bad_and_the_session_goes_on():
    reader = CommandReader(max_line=100)
    out = events(b"t1 NOOP " + b"x" * 300 + b"\r\nt2 NOOP\r\n", reader)
    assert isinstance(out[0], RejectedCommand) and out[0].tag == "t1"
    assert out[1] == Command("t2", "NOOP", [])


def test_malformed_commands_are_rejected_with_their_tag():
    for line in [b"a1 FETCH 1 (FLAGS", b'a2 LOGIN "x', b"a3 FETCH 1 (FLAGS))", b"a4  NOOP"]:
        (ev,) = events(line + b"\r\n")
        assert isinstance(ev, RejectedCommand), line
        assert isinstance(ev.error, ImapBad)
        assert ev.tag == line.split()[0].decode()


def test_bad_tag_is_answered_untagged():
    (ev,) = events(b"+a NOOP\r\n")
    assert isinstance(ev, RejectedCommand) and ev.tag == "*"


def test_sequence_sets():
    s = parse_sequence_set(Atom("1:3,7,9:*"))
    assert s.resolve(12) == [(1, 3), (7, 7), (9, 12)]
    assert parse_sequence_set(Atom("*:4")).resolve(2) == [(2, 4)]
    assert parse_sequence_set(Atom("$"), allow_dollar=True).dollar
    for bad in ["0", "1:", "a", "1,,2", "$"]:
        try:
            parse_sequence_set(Atom(bad))
        except ImapBad:
            continue
        raise AssertionError(bad)


def test_response_formatting():
    assert quoted_or_literal(b'a"b') == b'"a\\"b"'
    assert quoted_or_literal(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert flag_list(["foo", "\\Deleted", "\\Seen"]) == b"(\\Seen \\Deleted foo)"
    assert format_value([None, 3, b"x", Atom("A")]) == b'(NIL 3 "x" A)'
    assert encode_mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert decode_mailbox(b"Entw&APw-rfe") == "Entwürfe"
    assert decode_mailbox(b"inbox") == "INBOX"


_astring = st.binary(min_size=1, max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(max_examples=200, deadline=None)
@given(st.lists(_astring, min_size=1, max_size=5), st.integers(min_value=1, max_value=7))
def test_strings_round_trip_through_literals_and_quotes(values, chunk):
    wire = b"t1 X " + b" ".join(quoted_or_literal(v, utf8=True) for v in values) + b"\r\n"
    # quoted_or_literal writes sync literals; feed them as if "+" had been sent.
    reader = CommandReader()
    out = []
    for i in range(0, len(wire), chunk):
        reader.feed(wire[i : i + chunk])
        while (ev := reader.next_event()) is not None:
            if not isinstance(ev, NeedContinuation):
                out.append(ev)
    assert out == [Command("t1", "X", list(values))]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_reader(data):
    reader = CommandReader(max_line=64, max_literal=32)
    reader.feed(data + b"\r\n")
    for _ in range(1000):
        ev = reader.next_event()
        if ev is None:
            break
        assert isinstance(ev, (Command, NeedContinuation, RejectedCommand))


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20))
def test_mailbox_names_round_trip_modified_utf7(name):
    wire = encode_mailbox(name)
    (cmd,) = events(b"t SELECT " + wire + b"\r\n") if wire else [None]
    if cmd is None or isinstance(cmd, RejectedCommand) or isinstance(cmd, NeedContinuation):
        return
    arg = cmd.args[0]
    if name.upper() == "INBOX":
        expected = "INBOX"
    elif name.upper().startswith("INBOX/"):
        expected = "INBOX" + name[5:]
    else:
        expected = name
    assert decode_mailbox(arg) == expected


def test_imapclient_multiappend_double_space_between_literals_is_accepted():
    (cmd,) = events(b"a APPEND INBOX {1+}\r\nx  {1+}\r\ny\r\n")
    assert cmd == Command("a", "APPEND", [Atom("INBOX"), b"x", b"y"])
    (bad,) = events(b"a APPEND  INBOX\r\n")
    assert isinstance(bad, RejectedCommand)


def test_section_atoms_and_ordinary_brackets_scan_alike():
    """Atoms are scanned in runs up to a "[" that may open a FETCH section (RFC 3501 §9:
    "[" is an ATOM-CHAR elsewhere); the section is kept verbatim to its matching "]"."""
    args = parse_line(
        b"t FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100> foo[bar] BODY[1][2] X])"
    ).args
    assert args[1] == [
        Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>"),
        Atom("foo[bar]"),
        Atom("BODY[1][2]"),
        Atom("X]"),
    ]
    assert parse_line(b"t SELECT foo[bar").args == [Atom("foo[bar")]
    for bad, why in (
        (b"t FETCH 1 BODY[HEADER", "Unterminated"),
        (b"t FETCH 1 BODY[a[b]", "Unterminated"),
        (b"t FETCH 1 BODY[\x00]", "Bad character"),
    ):
        with pytest.raises(ImapBad, match=why):
            parse_line(bad)


def test_flat_args_read_as_the_tokenizer_reads_them():
    # The one-match reading of plain arguments gives what the tokenizer gives (types too),
    # and leaves everything else to it.
    pieces = [b"a", b"B", b"1", b" ", b"(", b")", b"[", b"]", b"BODY[", b"BODY.PEEK[", b"<"]
    pieces += [b".", b'"', b"{", b"~", "é".encode(), b"\xff", b"*", b":", b"\\", b"\x00", b"\r"]
    rng = random.Random(7)
    taken = 0
    for _ in range(50_000):
        text = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        flat = _flat_args(text, 0)
        if flat is None:
            continue
        taken += 1
        try:
            tokens = tokenize([text])
        except ImapBad:
            raise AssertionError(f"{text!r} read, but the tokenizer refuses it") from None
        assert flat == tokens, text
        assert [type(a) for a in flat] == [type(t) for t in tokens], text
        for a, t in zip(flat, tokens, strict=True):
            if type(a) is list:
                assert [type(x) for x in a] == [type(x) for x in t], text
    assert taken > 1000
    assert _flat_args(b"c1 FETCH 37 (BODY.PEEK[])", 9) == ["37", ["BODY.PEEK[]"]]
    assert _flat_args(b"1 (BODY.PEEK[HEADER.FIELDS (FROM)])", 0) is None
    assert _flat_args(b"1 ()", 0) is None
