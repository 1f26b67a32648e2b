"""Every configurable limit: sizes, recipients, line lengths, timeouts, connections, errors."""

import smtplib
import time

import pytest

from tests.smtp.conftest import Wire


def session(server, kind="smtp") -> Wire:
    w = Wire(server.ports[kind])
    w.cmd("EHLO c")
    return w


def test_rfc1870_declared_size_over_limit_refused_at_mail(smtp_server):
    server = smtp_server(smtp={"max_message_size": 1000})
    w = session(server)
    assert "SIZE 1000" in " ".join(w.send(b"EHLO c\r\n") or w.reply()[1])
    code, text = w.cmd("MAIL FROM:<a@remote.test> SIZE=1001")
    assert (code, text[:5]) == (552, "5.3.4")
    assert w.cmd("MAIL FROM:<a@remote.test> SIZE=1000")[0] == 250


def test_actual_size_over_limit_refused_after_data_and_nothing_stored(smtp_server):
    server = smtp_server(smtp={"max_message_size": 1000})
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.cmd("DATA")
    w.send(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 20)
    w.send(b".\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (552, "5.3.4")
    assert server.maildir_files("alice@example.test") == []
    assert w.cmd("NOOP")[0] == 250


def test_bdat_over_size_limit_refused_and_transaction_failed(smtp_server):
    server = smtp_server(smtp={"max_message_size": 1000})
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.send(b"BDAT 1500\r\n" + b"z" * 1500)
    assert w.reply()[0] == 552
    w.send(b"BDAT 3 LAST\r\nabc")
    assert w.reply()[0] == 503
    assert server.maildir_files("alice@example.test") == []


def test_too_many_recipients_452_4_5_3(smtp_server):
    server = smtp_server(smtp={"max_recipients": 2})
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test>")
    assert w.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert w.cmd("RCPT TO:<bob@example.test>")[0] == 250
    code, text = w.cmd("RCPT TO:<carol@other.test>")
    assert (code, text[:5]) == (452, "4.5.3")
    w.cmd("DATA")
    w.send(b"Subject: two\r\n\r\nx\r\n.\r\n")
    assert w.reply()[0] == 250
    assert len(server.maildir_files("bob@example.test")) == 1
    assert server.maildir_files("carol@other.test") == []


def test_command_line_over_512_octets_is_500_5_5_2(server):
    w = session(server)
    code, text = w.cmd("MAIL FROM:<" + "a" * 520 + "@remote.test>")
    assert (code, text[:5]) == (500, "5.5.2")
    assert w.cmd("NOOP")[0] == 250  # the rest of the long line was not run as a command


def test_text_line_over_1000_octets_is_554_5_6_0_body_never_runs(server):
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.cmd("DATA")
    w.send(b"Subject: long\r\n\r\n" + b"q" * 999 + b"\r\nRSET\r\nQUIT\r\n.\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (554, "5.6.0")
    assert w.cmd("NOOP")[0] == 250
    assert server.maildir_files("alice@example.test") == []


def test_line_of_1000_octets_with_crlf_is_accepted(server):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=10) as s:
        s.sendmail("a@remote.test", ["alice@example.test"], b"S: x\r\n\r\n" + b"w" * 998 + b"\r\n")
    assert b"w" * 998 + b"\n" in server.message("alice@example.test")


def test_command_timeout_421_4_4_2(smtp_server):
    server = smtp_server(smtp={"command_timeout": 1})
    start = time.monotonic()  # before connecting: the server's timer starts at the connection
    w = session(server)
    code, text = w.reply()
    assert (code, text[0][:5]) == (421, "4.4.2")
    assert 0.8 < time.monotonic() - start < 5
    assert w.closed()


def test_input_keeps_the_command_timeout_away_and_it_counts_from_the_last(smtp_server):
    server = smtp_server(smtp={"command_timeout": 1})
    start = time.monotonic()  # before connecting: the server's timer starts at the connection
    w = session(server)
    while time.monotonic() - start < 2.2:  # twice the timeout, and more, in commands
        assert w.cmd("NOOP")[0] == 250
        time.sleep(0.3)
    last = time.monotonic()
    code, text = w.reply()
    assert (code, text[0][:5]) == (421, "4.4.2")
    assert 0.6 < time.monotonic() - last < 2.5
    assert w.closed()


def test_data_timeout_421_and_nothing_stored(smtp_server):
    server = smtp_server(smtp={"data_timeout": 1, "command_timeout": 30})
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.cmd("DATA")
    w.send(b"Subject: half\r\n\r\npartial")
    assert w.reply()[0] == 421
    assert server.maildir_files("alice@example.test") == []


@pytest.mark.parametrize("limit", [{"connections_per_ip": 2}, {"connections_total": 2}])
def test_connection_limits_421_4_7_0_and_slot_released(smtp_server, limit):
    server = smtp_server(limits=limit)
    per_ip = "connections_per_ip" in limit
    a, b = Wire(server.ports["smtp"]), Wire(server.ports["submission" if per_ip else "smtp"])
    if not per_ip:
        # Sessions in a mail transaction are never closed to make room for a newcomer.
        for w in (a, b):
            w.cmd("EHLO c")
            assert w.cmd("MAIL FROM:<a@remote.test>")[0] == 250
    c = Wire(server.ports["smtp"], greeting=False)
    code, text = c.reply()
    assert (code, text[0][:5]) == (421, "4.7.0")
    # The refusal says which limit was hit.
    which = "from your address" if per_ip else "to this server"
    assert which in text[0]
    assert c.closed()
    a.cmd("QUIT")
    a.closed()
    for _ in range(50):  # the slot comes back once the server has seen the close
        d = Wire(server.ports["smtp"], greeting=False)
        if d.reply()[0] == 220:
            break
        d.close()
        time.sleep(0.02)
    else:
        pytest.fail("slot not released")
    for w in (b, c, d):
        w.close()


def test_too_many_bad_commands_421_and_disconnect(smtp_server):
    server = smtp_server(limits={"bad_commands": 3})
    w = session(server)
    assert w.cmd("BOGUS")[0] == 500
    assert w.cmd("RCPT TO:<x@y.test>")[0] == 503
    assert w.cmd("MAIL FROM:<bad address>")[0] == 501
    code, text = w.reply()
    assert (code, text[0][:5]) == (421, "4.7.0")
    assert w.closed()


def test_talking_before_the_greeting_is_refused(smtp_server):
    server = smtp_server(smtp={"greeting_delay": 0.5})
    w = Wire(server.ports["smtp"], greeting=False)
    w.send(b"EHLO eager\r\nMAIL FROM:<spam@remote.test>\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (554, "5.5.1")
    assert w.closed()


def test_greeting_delay_waits_for_a_patient_client(smtp_server):
    server = smtp_server(smtp={"greeting_delay": 0.3})
    w = Wire(server.ports["smtp"])
    assert w.cmd("EHLO patient")[0] == 250
    w.close()


def _set_quota(server, address: str, limit_bytes: int) -> None:
    from tests.conftest import on_reactor

    server.services.accounts.set_quota(address, limit_bytes, 0)
    on_reactor(lambda: server.services.store.mailbox(address).set_quota(limit_bytes, 0))


def test_declared_size_against_quota_at_rcpt_452_or_552(server):
    _set_quota(server, "bob@example.test", 1000)
    w = session(server)
    w.cmd("MAIL FROM:<a@remote.test> SIZE=2000")
    code, text = w.cmd("RCPT TO:<bob@example.test>")
    assert (code, text[:5]) == (552, "5.2.2")  # can never fit
    assert w.cmd("RCPT TO:<alice@example.test>")[0] == 250
    w.cmd("RSET")
    _fill(server, "bob@example.test", 700)
    w.cmd("MAIL FROM:<a@remote.test> SIZE=500")
    code, text = w.cmd("RCPT TO:<bob@example.test>")
    assert (code, text[:5]) == (452, "4.2.2")  # may fit once mail is deleted


def _fill(server, address: str, size: int) -> None:
    from tests.conftest import on_reactor

    data = b"Subject: filler\r\n\r\n" + b"f" * (size - 23) + b"\r\n"
    on_reactor(lambda: server.services.store.mailbox(address).deliver(data))


def test_message_over_quota_refused_after_data_and_not_stored(server):
    _set_quota(server, "bob@example.test", 1000)
    w = session(server)
    for size, expect in ((3000, (552, "5.2.2")), (600, (452, "4.2.2"))):
        w.cmd("MAIL FROM:<a@remote.test>")
        assert w.cmd("RCPT TO:<bob@example.test>")[0] == 250
        w.cmd("DATA")
        w.send(b"Subject: fat\r\n\r\n" + (b"f" * 98 + b"\r\n") * (size // 100) + b".\r\n")
        code, text = w.reply()
        assert (code, text[0][:5]) == expect
        if size == 3000:
            _fill(server, "bob@example.test", 700)
    assert len(server.maildir_files("bob@example.test")) == 1  # only the filler
