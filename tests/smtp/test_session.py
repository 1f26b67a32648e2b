"""Session basics: EHLO/HELO, the small commands, ordering, PIPELINING, STARTTLS, BDAT."""

import smtplib
import ssl

import pytest

from tests.smtp.conftest import Wire


def test_ehlo_advertises_the_extensions_we_implement(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        for ext in (
            "pipelining",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "starttls",
            "chunking",
            "dsn",
            "help",
        ):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == str(50 * 1024 * 1024)
        # RFC 4954 §4 / RFC 8314: no AUTH over a clear connection.
        assert not s.has_extn("auth")
        s.starttls(context=Wire.context())
        s.ehlo("client.test")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
        assert not s.has_extn("starttls")


def test_helo_still_works_and_received_says_smtp(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        assert s.helo("old.client.test")[0] == 250
        s.sendmail("a@remote.test", ["bob@example.test"], b"Subject: x\r\n\r\nx\r\n")
    assert b"with SMTP id" in server.message("bob@example.test")


def test_small_commands_answered_with_enhanced_codes(wire):
    w = wire()
    assert w.cmd("NOOP") == (250, "2.0.0 Ok")
    assert w.cmd("VRFY alice@example.test")[0] == 252
    assert w.cmd("HELP")[0] == 214
    assert w.cmd("EXPN staff") == (502, "5.5.1 Error: command EXPN not implemented")
    assert w.cmd("FOO bar")[0:1] == (500,)
    assert w.cmd("MAIL FROM:<a@b.test>")[1].startswith("5.5.1")  # no EHLO yet
    w.cmd("EHLO c")
    assert w.cmd("RCPT TO:<alice@example.test>")[1].startswith("5.5.1")  # no MAIL
    assert w.cmd("DATA")[0] == 503
    assert w.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert w.cmd("MAIL FROM:<a@b.test>")[0] == 503  # nested
    assert w.cmd("RSET") == (250, "2.0.0 Ok")
    assert w.cmd("MAIL FROM:<a@b.test>")[0] == 250
    assert w.cmd("QUIT") == (221, "2.0.0 Bye")
    assert w.closed()


def test_rfc2920_pipelined_session_replies_in_order_in_one_write(server, wire):
    w = wire()
    w.send(
        b"EHLO pipe.test\r\nMAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: pipelined\r\n\r\nbody\r\n.\r\n"
        b"MAIL FROM:<b@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: second\r\n\r\nbody\r\n.\r\nQUIT\r\n"
    )
    codes = [c for c, _ in w.replies(12)]
    assert codes == [250, 250, 250, 550, 250, 354, 250, 250, 250, 354, 250, 221]
    assert len(server.maildir_files("alice@example.test")) == 1
    assert len(server.maildir_files("bob@example.test")) == 2


def test_commands_after_data_wait_for_the_delivery_reply(server, wire):
    """The MAIL pipelined after DATA is only answered after the 250 for the message."""
    w = wire()
    w.cmd("EHLO c")
    w.send(b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
    assert [c for c, _ in w.replies(3)] == [250, 250, 354]
    w.send(b"x\r\n.\r\nNOOP\r\n")
    (c1, t1), (c2, t2) = w.replies(2)
    assert c1 == 250 and "queued as" in t1
    assert (c2, t2) == (250, "2.0.0 Ok")


def test_rfc3207_commands_pipelined_after_starttls_are_discarded(server):
    w = Wire(server.ports["smtp"])
    w.cmd("EHLO c")
    # The injected MAIL/RCPT ride in the same packet as STARTTLS, in the clear.
    w.send(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
    assert w.reply()[0] == 220
    w.sock = Wire.context().wrap_socket(w.sock)
    # RFC 3207 §4.2: state is reset, so RCPT without EHLO/MAIL is out of sequence.
    code, text = w.cmd("RCPT TO:<alice@example.test>")
    assert code == 503
    code, lines = (w.send(b"EHLO c\r\n"), w.reply())[1]
    assert code == 250 and "AUTH PLAIN LOGIN SCRAM-SHA-256" in lines
    assert w.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    w.close()


def test_starttls_twice_and_with_argument(server, wire):
    w = wire()
    w.cmd("EHLO c")
    assert w.cmd("STARTTLS now")[0] == 501
    w.starttls()
    w.cmd("EHLO c")
    assert w.cmd("STARTTLS")[0] == 503


def test_received_header_names_tls_version_and_cipher_after_starttls(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.starttls(context=Wire.context())
        s.sendmail("a@remote.test", ["alice@example.test"], b"Subject: t\r\n\r\nx\r\n")
    msg = server.message("alice@example.test")
    assert b"with ESMTPS id" in msg
    assert b"(using TLSv1." in msg and b"with cipher " in msg


def test_rfc3030_bdat_chunks_are_not_dot_unstuffed(server, wire):
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    part1 = b"Subject: chunked\r\n\r\n..dots stay\r\n"
    part2 = b".\r\nQUIT\r\nend\r\n"
    w.send(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
    (c1, t1), (c2, t2) = w.replies(2)
    assert c1 == 250 and t1.startswith("2.0.0")
    assert c2 == 250 and "queued as" in t2
    assert w.cmd("NOOP")[0] == 250  # "QUIT" inside the chunk was content, not a command
    stored = server.message("alice@example.test")
    assert stored.endswith(b"..dots stay\n.\nQUIT\nend\n")


def test_bdat_refused_chunk_is_still_consumed(wire):
    w = wire()
    w.cmd("EHLO c")
    chunk = b"RSET\r\nQUIT\r\n"
    w.send(b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"NOOP\r\n")
    assert w.reply()[0] == 503  # no MAIL
    assert w.reply()[0] == 250  # the NOOP after the chunk; RSET/QUIT were never run


def test_bdat_zero_last_and_mixing_with_data(server, wire):
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.send(b"BDAT 12\r\nSubject: z\r\n")
    assert w.reply()[0] == 250
    assert w.cmd("DATA")[0] == 503
    assert w.cmd("BDAT 0 LAST")[0] == 250
    assert server.message("alice@example.test").endswith(b"Subject: z\n")


def test_bdat_without_size_closes_rather_than_guessing(wire):
    w = wire()
    w.cmd("EHLO c")
    assert w.cmd("BDAT lots")[0] == 501
    assert w.closed()


@pytest.mark.parametrize("kind", ["submissions"])
def test_rfc8314_implicit_tls_greets_inside_tls(server, kind):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", server.ports[kind], context=ctx, timeout=10) as s:
        s.ehlo("c")
        assert s.has_extn("auth") and not s.has_extn("starttls")


@pytest.mark.parametrize("tls", [False, True])
def test_pipelined_large_messages_with_flow_control(server, wire, tls):
    """40 x 100 KB messages pipelined in one stream while replies are read at the same time:
    the server pauses reading while deliveries are pending and loses nothing (also inside
    STARTTLS, where the TLS layer sits between us and the socket)."""
    w = wire()
    w.cmd("EHLO c")
    if tls:
        w.starttls()
        w.cmd("EHLO c")
    body = b"Subject: big\r\n\r\n" + (b"z" * 98 + b"\r\n") * 1000
    stream = b"".join(
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n" + body + b".\r\n"
        for _ in range(40)
    )
    codes = [c for c, _ in w.send_while_reading(stream + b"QUIT\r\n", 40 * 4 + 1)]
    assert codes == [250, 250, 354, 250] * 40 + [221]
    files = server.maildir_files("bob@example.test")
    assert len(files) == 40
    assert all(f.read_bytes().endswith((b"z" * 98 + b"\n") * 3) for f in files[:3])
