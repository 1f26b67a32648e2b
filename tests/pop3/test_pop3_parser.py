"""The pure POP3 parser and formatters: commands, line framing, replies, UIDL, wire encoding."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.pop3.parser import (
    DEFAULT_UIDL_FORMAT,
    CapaOptions,
    Command,
    LineSplitter,
    LineTooLong,
    Pop3Error,
    WireEncoder,
    capa_lines,
    check_uidl_format,
    encode_message,
    err,
    format_uidl,
    listing,
    multiline,
    ok,
    parse_command,
    parse_line_count,
    parse_message_number,
)

# --- commands ----------------------------------------------------------------------------------


def test_rfc1939_keywords_are_case_insensitive():
    assert parse_command(b"stat") == Command("STAT")
    assert parse_command(b"ReTr 3") == Command("RETR", ("3",))
    assert parse_command(b"TOP 1 10") == Command("TOP", ("1", "10"))


def test_rfc1939_pass_keeps_spaces_in_the_password():
    assert parse_command(b"PASS  two words ") == Command("PASS", (" two words ",))
    assert parse_command(b"USER joe@example.test") == Command("USER", ("joe@example.test",))


def test_pass_in_latin1_is_decoded_not_rejected():
    assert parse_command(b"PASS caf\xe9") == Command("PASS", ("café",))
    assert parse_command("PASS café".encode()) == Command("PASS", ("café",))


def test_rfc6856_utf8_keyword_has_a_digit():
    assert parse_command(b"UTF8") == Command("UTF8")


@pytest.mark.parametrize(
    "line", [b"", b"   ", b"X", b"TOOLONG", b"RE\x00TR", b"R+TR 1", b"\xff\xfe", b" STAT"]
)
def test_garbage_is_a_bad_command(line):
    with pytest.raises(Pop3Error) as e:
        parse_command(line)
    assert e.value.bad
    assert e.value.reply().startswith(b"-ERR ")


def test_rfc1939_arguments_longer_than_40_rejected_except_auth():
    with pytest.raises(Pop3Error):
        parse_command(b"LIST " + b"1" * 41)
    assert parse_command(b"AUTH PLAIN " + b"A" * 200).args[1] == "A" * 200


def test_message_numbers_and_line_counts():
    assert parse_message_number("17") == 17
    for bad in ("0", "-1", "x", "", "1.0", "٣", "99999999999"):
        with pytest.raises(Pop3Error):
            parse_message_number(bad)
    assert parse_line_count("0") == 0
    with pytest.raises(Pop3Error):
        parse_line_count("-1")


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_parse_command_never_raises_anything_but_pop3error(line):
    try:
        cmd = parse_command(line)
    except Pop3Error as e:
        assert e.reply().startswith(b"-ERR ")
    else:
        assert re.fullmatch("[A-Z0-9]{3,4}", cmd.name)


# --- framing -----------------------------------------------------------------------------------


def test_line_splitter_handles_crlf_lf_and_partial_lines():
    s = LineSplitter(512)
    s.feed(b"USER a\r\nPASS b\nST")
    assert s.next_line() == b"USER a"
    assert s.next_line() == b"PASS b"
    assert s.next_line() is None
    s.feed(b"AT\r\n")
    assert s.next_line() == b"STAT"
    assert s.next_line() is None


def test_line_splitter_reports_an_overlong_line_once_and_recovers():
    s = LineSplitter(16)
    s.feed(b"X" * 40)
    # Nothing is kept, and the error is due once the line ends (replies stay in order).
    assert s.next_line() is None
    assert s.pending == 0
    s.feed(b"Y" * 40 + b"\r\nNOOP\r\n")
    assert s.next_line() == LineTooLong(82)
    assert s.next_line() == b"NOOP"


def test_line_splitter_overlong_line_with_its_end_in_the_buffer():
    s = LineSplitter(16)
    s.feed(b"Z" * 30 + b"\r\nQUIT\r\n")
    assert s.next_line() == LineTooLong(32)
    assert s.next_line() == b"QUIT"


def test_line_splitter_discard_for_stls():
    s = LineSplitter(512)
    s.feed(b"STLS\r\nUSER evil\r\n")
    assert s.next_line() == b"STLS"
    assert s.discard() == len(b"USER evil\r\n")
    assert s.next_line() is None


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=10), st.data())
def test_line_splitter_any_split_gives_the_same_lines(lines, data):
    stream = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    s = LineSplitter(64)
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        s.feed(stream[prev:cut])
        prev = cut
        while (line := s.next_line()) is not None:
            got.append(line)
    assert got == lines


# --- replies -----------------------------------------------------------------------------------


def test_rfc2449_response_codes_in_brackets():
    assert ok() == b"+OK\r\n"
    assert ok("done") == b"+OK done\r\n"
    assert err("Locked.", "IN-USE") == b"-ERR [IN-USE] Locked.\r\n"
    assert err("No.") == b"-ERR No.\r\n"


def test_multiline_is_dot_stuffed_and_terminated():
    out = b"".join(multiline(b"+OK\r\n", [b"1 2", b".x", b""]))
    assert out == b"+OK\r\n1 2\r\n..x\r\n\r\n.\r\n"


def test_capa_lists_only_what_works_in_each_state():
    before_tls = capa_lines(CapaOptions(stls=True, login_allowed=False, transaction=False))
    assert b"STLS" in before_tls and b"USER" not in before_tls
    assert not any(c.startswith(b"SASL") for c in before_tls)
    after = capa_lines(
        CapaOptions(stls=False, login_allowed=True, transaction=False, expire="NEVER")
    )
    assert b"USER" in after and b"SASL PLAIN LOGIN" in after and b"STLS" not in after
    assert b"EXPIRE NEVER" in after
    for cap in (b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"):
        assert cap in after
    trans = capa_lines(
        CapaOptions(stls=True, login_allowed=True, transaction=True, login_delay=900)
    )
    assert b"USER" not in trans and b"STLS" not in trans and b"LOGIN-DELAY 900" in trans


# --- UIDL --------------------------------------------------------------------------------------


def test_default_uidl_is_dovecots_uid_and_uidvalidity_in_hex():
    assert format_uidl(DEFAULT_UIDL_FORMAT, 1, 1655390361, "k") == "0000000162AB4099"
    assert format_uidl(DEFAULT_UIDL_FORMAT, 0x1234ABCD, 1, "k") == "1234ABCD00000001"


def test_uidl_from_maildir_base_name():
    key = "1655390418.M100238P743770V0000000000000030I00000000081274AE_0.host"
    assert format_uidl("%f", 5, 7, key) == key
    assert format_uidl("%v.%u", 5, 7, key) == "7.5"
    assert format_uidl("%v-%u%%", 5, 7, key) == "7-5%"


def test_uidl_outside_rfc1939_range_is_escaped():
    u = format_uidl("%f", 1, 1, "a b\u00e9")
    assert " " not in u and all(0x21 <= ord(c) <= 0x7E for c in u)


def test_uidl_format_validation():
    check_uidl_format(DEFAULT_UIDL_FORMAT)
    check_uidl_format("%f")
    for bad in ("%v", "static", "%g", "%08Xu%n"):
        with pytest.raises(ValueError):
            check_uidl_format(bad)


# --- message encoding --------------------------------------------------------------------------


def reference_wire(data: bytes, body_lines: int | None = None) -> bytes:
    """Line-by-line model of RFC 1939 §3 byte-stuffing and §7 TOP, for the property tests."""
    text = data.replace(b"\r\n", b"\n")
    if text.endswith(b"\r"):
        text = text[:-1] + b"\n"
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if body_lines is not None:
        try:
            blank = lines.index(b"")
        except ValueError:
            blank = len(lines)
        lines = lines[: blank + 1 + body_lines]
    out = [(b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines]
    return b"".join(out) + b".\r\n"


def test_lf_message_becomes_crlf_and_dot_stuffed():
    msg = b"Subject: x\n\n.hidden\nbody\n..two\n.\n"
    assert encode_message(msg) == b"Subject: x\r\n\r\n..hidden\r\nbody\r\n...two\r\n..\r\n.\r\n"


def test_crlf_message_is_not_doubled_and_missing_final_newline_added():
    assert encode_message(b"A: b\r\n\r\nx") == b"A: b\r\n\r\nx\r\n.\r\n"
    assert encode_message(b"") == b".\r\n"


def test_dot_stuffing_across_a_chunk_boundary():
    enc = WireEncoder()
    out = enc.feed(b"A: b\n\nline\n") + enc.feed(b".starts with dot\r") + enc.feed(b"\n.")
    out += enc.finish()
    assert out == b"A: b\r\n\r\nline\r\n..starts with dot\r\n..\r\n.\r\n"


def test_rfc1939_top_sends_headers_blank_line_and_n_lines():
    msg = b"A: 1\nB: 2\n\nl1\nl2\nl3\n"
    assert encode_message(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n.\r\n"
    assert encode_message(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n.\r\n"
    # More lines than the body has: the whole message.
    assert encode_message(msg, 99) == encode_message(msg)


def test_top_stops_reading_once_done():
    enc = WireEncoder(1)
    out = enc.feed(b"A: 1\n\nl1\nl2")
    assert enc.done
    assert enc.feed(b"more\n") == b""
    assert out + enc.finish() == b"A: 1\r\n\r\nl1\r\n.\r\n"


_msg_bytes = st.lists(
    st.sampled_from([b"\n", b"\r\n", b".", b"..", b"a", b"Subject: x", b"\r", b" "]), max_size=40
).map(b"".join)


@settings(max_examples=200)
@given(_msg_bytes, st.data(), st.one_of(st.none(), st.integers(0, 5)))
def test_chunked_encoding_matches_the_line_model(msg, data, body_lines):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(msg)), max_size=8)))
    enc = WireEncoder(body_lines)
    out = b""
    prev = 0
    for cut in [*cuts, len(msg)]:
        out += enc.feed(msg[prev:cut])
        prev = cut
    out += enc.finish()
    assert out == reference_wire(msg, body_lines)
    assert out == encode_message(msg, body_lines)


def test_listing_joins_numbered_lines():
    assert b"".join(listing(b"+OK\r\n", [b"1 10", b"2 20"])) == b"+OK\r\n1 10\r\n2 20\r\n.\r\n"
    assert b"".join(listing(b"+OK\r\n", [])) == b"+OK\r\n.\r\n"
