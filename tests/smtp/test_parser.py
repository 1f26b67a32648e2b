"""The pure SMTP parser: paths and the relay tricks, parameters, lines, DATA/BDAT bodies."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.smtp.parser import (
    LINE_TOO_LONG,
    BodyReader,
    LineBuffer,
    SmtpReply,
    format_reply,
    parse_auth,
    parse_bdat,
    parse_command,
    parse_mail_from,
    parse_path,
    parse_rcpt_to,
)

FAST = settings(max_examples=200, deadline=None)


# --- replies -------------------------------------------------------------------------------


def test_rfc2034_enhanced_code_on_every_line_of_multiline_reply():
    assert format_reply(250, "2.0.0", ["a", "b"]) == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"


def test_reply_text_cannot_inject_a_line_break():
    assert format_reply(550, "5.1.1", "x\r\n250 ok") == b"550 5.1.1 x  250 ok\r\n"


# --- commands ------------------------------------------------------------------------------


def test_command_verb_is_case_insensitive_and_arg_kept():
    assert parse_command(b"mail FROM:<a@b>").verb == "MAIL"
    assert parse_command(b"mail FROM:<a@b>").arg == "FROM:<a@b>"


@pytest.mark.parametrize("line", [b"", b"\xff\xfe", b"MA1L x", b"MAIL\0FROM", b" HELO x"])
def test_bad_command_lines_are_500(line):
    with pytest.raises(SmtpReply) as e:
        parse_command(line)
    assert e.value.code == 500


@FAST
@given(st.binary(max_size=600))
def test_random_bytes_never_raise_out_of_the_command_parsers(data):
    for parse in (
        lambda d: parse_command(d),
        lambda d: parse_mail_from(d.decode("utf-8", "replace")),
        lambda d: parse_rcpt_to(d.decode("utf-8", "replace"), utf8=True),
        lambda d: parse_rcpt_to(d.decode("latin-1")),
        lambda d: parse_bdat(d.decode("latin-1")),
        lambda d: parse_auth(d.decode("latin-1")),
    ):
        try:
            parse(data)
        except SmtpReply as e:
            assert 400 <= e.code < 600
            assert e.to_bytes().endswith(b"\r\n")


@FAST
@given(st.text(alphabet='<>@"\\:,.[]%!aZ0 =+-;:IPv6', max_size=60))
def test_path_shaped_text_never_raises_out_of_mail_and_rcpt(text):
    for arg in ("FROM:" + text, "TO:" + text):
        try:
            (parse_mail_from if arg.startswith("F") else parse_rcpt_to)(arg)
        except SmtpReply:
            pass


# --- paths: RFC 5321 §4.1.2 and the relay tricks --------------------------------------------


def test_outlook_space_after_colon_and_missing_brackets():
    assert parse_mail_from("FROM: <a@example.test>").sender.address == "a@example.test"
    assert parse_mail_from("FROM:a@example.test SIZE=5").size == 5


def test_null_reverse_path_for_bounces():
    assert parse_mail_from("FROM:<>").sender is None
    with pytest.raises(SmtpReply) as e:
        parse_rcpt_to("TO:<>")
    assert (e.value.code, e.value.enhanced) == (501, "5.1.3")


def test_domain_lower_cased_local_part_kept():
    m = parse_path("<Joe.User@Example.TEST>")
    assert (m.local, m.domain) == ("Joe.User", "example.test")


def test_source_route_is_accepted_and_ignored_rfc5321_4_1_1_3():
    m = parse_path("<@relay.one,@relay.two:user@example.test>")
    assert m.address == "user@example.test"
    assert m.source_route == ("relay.one", "relay.two")


def test_unnecessary_quotes_do_not_change_the_address():
    m = parse_path('<"user"@example.test>')
    assert m.address == "user@example.test" and not m.quoted


def test_quoted_local_part_with_at_is_routing():
    m = parse_path('<"user@remote.test"@example.test>')
    assert m.quoted and m.has_routing
    assert m.address == '"user@remote.test"@example.test'


@pytest.mark.parametrize(
    "path", ["<user%remote.test@example.test>", "<remote.test!user@example.test>"]
)
def test_percent_hack_and_bang_path_are_routing(path):
    assert parse_path(path).has_routing


@pytest.mark.parametrize(
    "path",
    [
        "<user@example.test.>",  # trailing dot
        "<user@@example.test>",
        "<user.@example.test>",
        "<.user@example.test>",
        "<user@-bad.test>",
        "<user@exa_mple.test>",
        "<user@[300.1.1.1]>",
        "<@a:>",
        "<@a,b:u@c>",
        "<user@example.test",
        "<u\u00e9@example.test>",  # UTF-8 without SMTPUTF8
    ],
)
def test_bad_paths_are_refused(path):
    with pytest.raises(ValueError):
        parse_path(path)


def test_ip_literals_are_normalised():
    assert parse_path("<u@[127.0.0.1]>").domain == "[127.0.0.1]"
    assert parse_path("<u@[IPv6:0:0::1]>").domain == "[IPv6:::1]"
    assert parse_path("<u@[127.0.0.1]>").is_ip_literal


def test_bare_postmaster_rfc5321_4_1_1_3():
    assert parse_path("<Postmaster>").domain == ""


def test_smtputf8_addresses_rfc6531():
    mf = parse_mail_from("FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8")
    assert mf.smtputf8 and mf.sender.domain == "b\u00fccher.example"
    with pytest.raises(SmtpReply) as e:
        parse_rcpt_to("TO:<j\u00f6rg@example.test>", utf8=False)
    assert (e.value.code, e.value.enhanced) == (553, "5.6.7")
    assert parse_rcpt_to("TO:<j\u00f6rg@example.test>", utf8=True).recipient.local == "j\u00f6rg"


# --- parameters ----------------------------------------------------------------------------


def test_mail_parameters_size_body_dsn():
    mf = parse_mail_from("FROM:<a@b.test> SIZE=1000 BODY=8bitmime RET=hdrs ENVID=QQ+2Bx AUTH=<>")
    assert (mf.size, mf.body, mf.ret, mf.envid, mf.auth) == (
        1000,
        "8BITMIME",
        "HDRS",
        "QQ+2Bx",
        "<>",
    )


def test_rcpt_dsn_parameters_rfc3461():
    r = parse_rcpt_to("TO:<a@b.test> NOTIFY=success,delay ORCPT=rfc822;a+40b.test")
    assert r.notify == ("SUCCESS", "DELAY") and r.orcpt == "rfc822;a+40b.test"
    assert parse_rcpt_to("TO:<a@b.test> NOTIFY=NEVER").notify == ("NEVER",)


@pytest.mark.parametrize(
    "arg,code",
    [
        ("FROM:<a@b.test> FOO=1", 555),
        ("FROM:<a@b.test> BODY=BINARYMIME", 555),
        ("FROM:<a@b.test> SIZE=abc", 501),
        ("FROM:<a@b.test> SIZE=1 SIZE=2", 501),
        ("FROM:<a@b.test> RET=ALL", 501),
        ("FROM:<a@b.test> ENVID=a+zz", 501),
        ("FROM:<a@b.test>SIZE=1", 501),
        ("FROM:<a@b.test> SMTPUTF8=yes", 501),
        ("FRM:<a@b.test>", 501),
    ],
)
def test_bad_mail_parameters(arg, code):
    with pytest.raises(SmtpReply) as e:
        parse_mail_from(arg)
    assert e.value.code == code


@pytest.mark.parametrize(
    "arg",
    [
        "TO:<a@b.test> NOTIFY=NEVER,SUCCESS",
        "TO:<a@b.test> NOTIFY=sometimes",
        "TO:<a@b.test> ORCPT=nosemicolon",
        "TO:<a@b.test> ORCPT=rfc822;bad+zz",
    ],
)
def test_bad_rcpt_parameters(arg):
    with pytest.raises(SmtpReply) as e:
        parse_rcpt_to(arg)
    assert e.value.code == 501


def test_bdat_and_auth_arguments():
    assert parse_bdat("100 LAST") == (100, True)
    assert parse_bdat("0") == (0, False)
    # Windows Mail: two spaces before the initial response.
    assert parse_auth("PLAIN  AGEAYg==") == ("PLAIN", b"AGEAYg==")
    assert parse_auth("login") == ("LOGIN", None)
    with pytest.raises(SmtpReply):
        parse_bdat("-1")


# --- command lines -------------------------------------------------------------------------


def test_line_buffer_over_limit_is_discarded_and_reported_once():
    lb = LineBuffer(512)
    lb.feed(b"A" * 600)
    assert lb.next_line() is None
    assert lb.pending() == 0  # nothing over the limit is held
    lb.feed(b"B" * 600 + b"\r\nNOOP\r\n")
    assert lb.next_line() is LINE_TOO_LONG
    assert lb.next_line() == b"NOOP"
    assert lb.next_line() is None


def test_line_limit_counts_the_crlf_rfc5321_4_5_3_1_4():
    lb = LineBuffer(512)
    lb.feed(b"X" * 510 + b"\r\n" + b"Y" * 511 + b"\r\n")
    assert lb.next_line() == b"X" * 510
    assert lb.next_line() is LINE_TOO_LONG


@FAST
@given(st.binary(max_size=3000), st.lists(st.integers(1, 700), max_size=10))
def test_line_buffer_is_chunking_invariant_and_bounded(data, cuts):
    def run(chunks):
        lb, out = LineBuffer(512), []
        for c in chunks:
            lb.feed(c)
            while (line := lb.next_line()) is not None:
                out.append(line)
            assert lb.pending() <= 512 + len(c)
        return out

    chunks, pos = [], 0
    for n in cuts:
        chunks.append(data[pos : pos + n])
        pos += n
    chunks.append(data[pos:])
    assert run(chunks) == run([data])


# --- DATA / BDAT bodies --------------------------------------------------------------------


def reader(**kw):
    args = dict(max_size=1_000_000, max_line=1000, bare_newline="reject")
    args.update(kw)
    return BodyReader(**args)


def test_dot_unstuffing_and_terminator():
    r = reader()
    assert r.feed(b"a\r\n..b\r\n.c\r\n.\r\nQUIT\r\n") == b"QUIT\r\n"
    assert r.result() == b"a\r\n.b\r\nc\r\n"


def test_terminator_as_first_line_is_an_empty_message():
    r = reader()
    assert r.feed(b".\r\n") == b""
    assert r.result() == b""


@pytest.mark.parametrize(
    "smuggle",
    [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n", b"\n.\r\r\n"],
)
def test_smuggling_terminators_never_end_data(smuggle):
    r = reader()
    body = b"Subject: x\r\n\r\nhi" + smuggle + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@example.test>\r\n"
    assert r.feed(body) is None
    assert r.feed(b".\r\n") == b""
    with pytest.raises(SmtpReply) as e:
        r.result()
    assert (e.value.code, e.value.enhanced) == (554, "5.5.2")


def test_normalize_policy_turns_bare_newlines_into_crlf_but_keeps_one_message():
    r = reader(bare_newline="normalize")
    assert r.feed(b"a\nb\rc\r\n\n.\nMAIL FROM:<x>\r\n.\r\n") == b""
    assert r.result() == b"a\r\nb\r\nc\r\n\r\n.\r\nMAIL FROM:<x>\r\n"


def test_overlong_line_rejected_554_5_6_0_and_body_never_runs_as_commands():
    r = reader()
    long_line = b"x" * 5000 + b"\r\n"
    assert r.feed(long_line + b"RSET\r\n") is None
    assert r.feed(b".\r\nNOOP\r\n") == b"NOOP\r\n"
    with pytest.raises(SmtpReply) as e:
        r.result()
    assert (e.value.code, e.value.enhanced) == (554, "5.6.0")


def test_line_of_exactly_1000_octets_with_crlf_is_fine():
    r = reader()
    r.feed(b"y" * 998 + b"\r\n.\r\n")
    assert r.result() == b"y" * 998 + b"\r\n"


def test_overlong_line_never_buffers_the_whole_line():
    r = reader()
    for _ in range(100):
        r.feed(b"z" * 10000)
    assert len(r._pending) <= 1000


def test_message_over_size_limit_552_5_3_4_and_nothing_kept():
    r = reader(max_size=100)
    r.feed(b"a" * 90 + b"\r\n" + b"b" * 90 + b"\r\n.\r\n")
    assert r.too_big and not r._parts
    with pytest.raises(SmtpReply) as e:
        r.result()
    assert (e.value.code, e.value.enhanced) == (552, "5.3.4")


def test_bdat_content_is_not_dot_unstuffed_and_may_end_without_newline():
    r = reader(dot_stuffed=False)
    assert r.feed(b"..a\r\n.\r\nb") is None
    r.finish()
    assert r.result() == b"..a\r\n.\r\nb"


def dot_stuff(body: bytes) -> bytes:
    return b"".join(
        (b"." + line if line.startswith(b".") else line) for line in body.splitlines(True)
    )


crlf_lines = st.lists(
    st.binary(max_size=80).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"),
    max_size=30,
)


@FAST
@given(crlf_lines, st.lists(st.integers(1, 50), max_size=20))
def test_dot_stuffing_round_trips_under_any_chunking(lines, cuts):
    body = b"".join(lines)
    wire = dot_stuff(body) + b".\r\nNEXT"
    r, pos, rest = reader(), 0, None
    for n in cuts + [len(wire)]:
        rest = r.feed(wire[pos : pos + n])
        pos += n
        if rest is not None:
            break
    assert rest is not None and rest + wire[pos:] == b"NEXT"
    assert r.result() == body


@FAST
@given(st.binary(max_size=400), st.lists(st.integers(1, 40), max_size=15))
def test_only_crlf_dot_crlf_ends_data_whatever_the_bytes(data, cuts):
    """Random bytes: DATA ends exactly after the first <CRLF>.<CRLF> (counting the start)."""
    idx = (b"\r\n" + data).find(b"\r\n.\r\n")
    r, pos, rest = reader(max_line=1000, max_size=200), 0, None
    for n in cuts + [len(data) + 1]:
        chunk = data[pos : pos + n]
        pos += n
        rest = r.feed(chunk)
        if rest is not None:
            rest += data[pos:]
            break
    if idx < 0:
        assert rest is None
    else:
        assert rest == data[idx + 3 :]
        try:
            r.result()
        except SmtpReply as e:
            assert e.code in (552, 554)


body_bytes = st.lists(
    st.sampled_from(
        [b"a", b"\r\n", b".", b"\n", b"\r", b"x" * 50, b"\r\n.\r\n", b"..", b"y" * 300]
    ),
    max_size=40,
).map(b"".join)


@FAST
@given(
    body_bytes,
    st.lists(st.integers(1, 400), max_size=8),
    st.sampled_from(["reject", "normalize"]),
    st.booleans(),
)
def test_bulk_path_matches_the_line_by_line_path(data, cuts, policy, dot_stuffed):
    def run(fast):
        r = reader(max_line=200, max_size=1500, bare_newline=policy, dot_stuffed=dot_stuffed)
        r.fast = fast
        pos, rest = 0, None
        for n in cuts + [len(data) + 1]:
            rest = r.feed(data[pos : pos + n])
            pos += n
            if rest is not None:
                rest += data[pos:]
                break
        if not dot_stuffed:
            r.finish()
        try:
            result = r.result()
        except SmtpReply as e:
            result = e.code
        return rest, result, r.size

    assert run(True) == run(False)


def test_domain_forms_idna_both_ways():
    from mailsuite.smtp.parser import domain_forms

    assert domain_forms("b\u00fccher.test") == ["b\u00fccher.test", "xn--bcher-kva.test"]
    assert domain_forms("xn--bcher-kva.test") == ["xn--bcher-kva.test", "b\u00fccher.test"]
    assert domain_forms("example.test") == ["example.test"]
