"""Pure wire pieces of the client: reply parsing, DATA encoding, EHLO and MAIL/RCPT params."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.relay.client import (
    encode_data,
    has_utf8_headers,
    mail_command,
    needs_smtputf8,
    parse_ehlo,
    rcpt_command,
)
from mailsuite.relay.reply import ReplyParseError, ReplyParser


def unstuff(stream: bytes) -> bytes:
    """What a receiving server does (RFC 5321 §4.5.2): stop at CRLF.CRLF, drop one dot."""
    assert stream.endswith(b"\r\n.\r\n") or stream == b".\r\n"
    body = stream[:-3]
    lines = body.split(b"\r\n")
    assert b"." not in lines[:-1], "a lone dot inside the body would end DATA early"
    return b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)


def test_reply_multiline_and_enhanced_code():
    p = ReplyParser()
    out = p.feed(b"250-mx.test Hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n550 5.1.1 no")
    assert len(out) == 1 and out[0].code == 250
    assert out[0].lines == ("mx.test Hello", "PIPELINING", "SIZE 1000")
    (r,) = p.feed(b" such user\r\n")
    assert r.code == 550 and r.enhanced == "5.1.1" and r.text == "no such user"
    assert r.permanent and r.status() == "5.1.1"


def test_reply_without_enhanced_code_gets_class_default():
    (r,) = ReplyParser().feed(b"451 try later\n")
    assert r.transient and r.status("1.0") == "4.1.0" and r.wire() == "451 try later"


def test_reply_code_mismatch_in_multiline_rejected():
    with pytest.raises(ReplyParseError):
        ReplyParser().feed(b"250-a\r\n251 b\r\n")


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_reply_parser_never_crashes(data):
    p = ReplyParser()
    try:
        for i in range(0, len(data), 7):
            p.feed(data[i : i + 7])
    except ReplyParseError:
        pass


def test_one_line_replies_are_parsed_once_and_their_cache_stays_bounded():
    from mailsuite.relay import reply

    p = ReplyParser()
    (a,) = p.feed(b"250 2.1.0 Ok\r\n")
    (b,) = p.feed(b"250 2.1.0 Ok\r\n")
    assert a is b and a.code == 250 and a.enhanced == "2.1.0" and a.lines == ("Ok",)
    for i in range(reply.ONE_LINE_CACHED * 2 + 3):
        (r,) = p.feed(b"250 2.0.0 queued as %d\r\n" % i)
        assert r.text == f"queued as {i}"
    assert len(reply._ONE_LINE_CACHE) <= reply.ONE_LINE_CACHED
    (r,) = p.feed(b"354\r\n")
    assert r.code == 354 and r.lines == ("",) and r.enhanced == ""


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"250", b"354", b"451", b"550"]),
            st.lists(
                st.sampled_from([b"", b"2.1.0 Ok", b"5.1.1 no", b"x y", b"\xc3\xa9"]),
                min_size=1,
                max_size=3,
            ),
        ),
        max_size=6,
    ),
    st.integers(1, 20),
)
def test_replies_fed_in_any_pieces_parse_as_fed_whole(replies, step):
    stream = b"".join(
        b"".join(
            code + (b" " if i == len(lines) - 1 else b"-") + t + b"\r\n"
            for i, t in enumerate(lines)
        )
        for code, lines in replies
    )
    whole = ReplyParser().feed(stream)
    p = ReplyParser()
    pieces = [r for i in range(0, len(stream), step) for r in p.feed(stream[i : i + step])]
    assert pieces == whole and len(whole) == len(replies)
    for r, (code, lines) in zip(whole, replies, strict=True):
        assert r.code == int(code) and len(r.lines) == len(lines)


def test_encode_data_stuffs_dots_and_normalises_line_ends():
    assert encode_data(b".hidden\n..two\nend") == b"..hidden\r\n...two\r\nend\r\n.\r\n"
    assert encode_data(b"a\r\n.\r\nb\r\n") == b"a\r\n..\r\nb\r\n.\r\n"


def test_encode_data_mixed_line_ends_and_bare_cr():
    # LF and CRLF both become CRLF; a CR not before LF is message content and stays.
    assert encode_data(b"a\nb\r\nc\rd\r\r\n.e") == b"a\r\nb\r\nc\rd\r\r\n..e\r\n.\r\n"
    assert encode_data(b"") == b".\r\n"
    assert encode_data(b"\n.\n") == b"\r\n..\r\n.\r\n"
    assert encode_data(b"") == b".\r\n"


@pytest.mark.parametrize("offset", range(16 * 1024 - 4, 16 * 1024 + 5))
def test_lone_dot_line_at_16k_boundaries_is_stuffed(offset):
    # RFC 5321 §4.5.2: the line "." inside the message is sent as "..", wherever it falls.
    msg = b"Subject: t\r\n\r\n" + b"x" * (offset - 16) + b"\r\n.\r\nafter\r\n"
    for n in (2, 3, 4):
        msg = msg[: n * 16 * 1024 - 10] + b"\r\n.\r\n" + msg[n * 16 * 1024 - 10 :]
    assert unstuff(encode_data(msg)) == msg


@settings(max_examples=200)
@given(st.lists(st.sampled_from([b".", b"..", b"", b"a", b".a", b"x" * 50]), max_size=40))
def test_encode_data_round_trips(lines):
    msg = b"".join(line + b"\r\n" for line in lines)
    assert unstuff(encode_data(msg)) == msg


def test_parse_ehlo_keywords():
    (r,) = ReplyParser().feed(
        b"250-mx Hello\r\n250-SIZE 35882577\r\n250-8bitmime\r\n250-AUTH PLAIN LOGIN\r\n250 DSN\r\n"
    )
    ext = parse_ehlo(r)
    assert ext == {"SIZE": "35882577", "8BITMIME": "", "AUTH": "PLAIN LOGIN", "DSN": ""}


def test_mail_and_rcpt_parameters_only_when_offered():
    full = {"SIZE": "0", "8BITMIME": "", "DSN": "", "SMTPUTF8": ""}
    assert mail_command("a@b", full, 42, True, False, "HDRS", "ID+2B1") == (
        b"MAIL FROM:<a@b> SIZE=42 BODY=8BITMIME RET=HDRS ENVID=ID+2B1\r\n"
    )
    assert mail_command("", {}, 42, True, False, "HDRS", "X") == b"MAIL FROM:<>\r\n"
    assert rcpt_command("r@x", full, ["SUCCESS", "FAILURE"], "rfc822;r@x") == (
        b"RCPT TO:<r@x> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;r@x\r\n"
    )
    assert rcpt_command("r@x", {}, ["SUCCESS"], "rfc822;r@x") == b"RCPT TO:<r@x>\r\n"


def test_needs_smtputf8_only_for_non_ascii_addresses():
    assert needs_smtputf8("jörg@example.test", ["a@b"])
    assert needs_smtputf8("a@b", ["zoë@b"])
    assert not needs_smtputf8("a@b", ["c@d"])


def test_utf8_header_detection():
    assert has_utf8_headers("Subject: grüße\r\n\r\nbody".encode())
    assert not has_utf8_headers("Subject: x\r\n\r\ngrüße".encode())
    assert not has_utf8_headers(b"Subject: \xe9t\xe9\r\n\r\n")  # latin-1 legacy


def test_orcpt_and_envid_sent_as_xtext():
    from mailsuite.relay.client import as_xtext, orcpt_param

    # Already xtext (as the SMTP server keeps it): unchanged.
    assert orcpt_param("rfc822;a+2Bb@x.test") == "rfc822;a+2Bb@x.test"
    # Raw (as delivery makes up for aliases): "+" and "=" encoded.
    assert orcpt_param("rfc822;user+tag@x.test") == "rfc822;user+2Btag@x.test"
    assert as_xtext("a=b c") == "a+3Db+20c"
    assert as_xtext("zoë") == "zo+C3+AB"
    full = {"DSN": ""}
    assert rcpt_command("u+t@x", full, None, "rfc822;u+t@x") == (
        b"RCPT TO:<u+t@x> ORCPT=rfc822;u+2Bt@x\r\n"
    )


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_as_xtext_round_trips(value):
    from mailsuite.relay.client import _XTEXT, as_xtext
    from mailsuite.spool.bounce import xtext_decode

    encoded = as_xtext(value)
    assert _XTEXT.match(encoded)
    if not _XTEXT.match(value):
        assert xtext_decode(encoded) == value
