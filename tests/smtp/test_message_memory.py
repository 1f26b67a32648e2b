"""The message content SMTP sessions hold in memory is bounded server-wide and per client
address ([limits] message_memory, message_memory_per_ip): past a bound, 452 4.3.1
(RFC 3463 insufficient system storage; RFC 5321 §4.5.3.1.10), the rest of a body read and
discarded with the stream kept in step, and every transaction's charge given back."""

from __future__ import annotations

import smtplib
import time

from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.smtp.conftest import Wire

MB = 1_000_000
LINE = b"x" * 98 + b"\r\n"  # 100 octets
HEADER = b"Subject: memory\r\n\r\n"  # 19 octets
LIMITS = {"message_memory": 10 * MB, "message_memory_per_ip": 3 * MB}


def body(octets: int) -> bytes:
    """Header and lines of exactly `octets` octets (a multiple of 100 plus 19)."""
    assert (octets - len(HEADER)) % len(LINE) == 0
    return HEADER + LINE * ((octets - len(HEADER)) // len(LINE))


def stored(content: bytes) -> bytes:
    """`content` as the Maildir keeps it (LF line ends)."""
    return content.replace(b"\r\n", b"\n")


def start_server(server_factory, **limits):
    # The largest message fits the share exactly: bounds are never taken below it.
    srv = server_factory(limits={**LIMITS, **limits}, smtp={"max_message_size": 3 * MB})
    srv.add_user("alice@example.test")
    return srv


def transaction(srv) -> Wire:
    w = Wire(srv.port("smtp"))
    assert w.cmd("EHLO client.remote.test")[0] == 250
    assert w.cmd("MAIL FROM:<b@remote.test>")[0] == 250
    assert w.cmd("RCPT TO:<alice@example.test>")[0] == 250
    return w


def two_thirds_by_bdat(srv) -> tuple[Wire, bytes]:
    """A transaction holding a first BDAT chunk of 2 MB (two thirds of the share), accepted."""
    first = transaction(srv)
    chunk = body(2 * MB + 19)
    first.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    assert first.reply()[0] == 250
    return first, chunk


def two_thirds_by_data(srv) -> tuple[Wire, bytes]:
    """A transaction in DATA holding 2 MB of an unfinished body (two thirds of the share)."""
    w = transaction(srv)
    assert w.cmd("DATA")[0] == 354
    content = body(2 * MB + 19)
    w.send(content)
    wait_held(srv, len(content))
    return w, content


def held(srv, ip: str | None = "127.0.0.1") -> int:
    budget = srv.services.message_memory
    return srv.call(lambda: budget.held if ip is None else budget.held_by(ip))


def wait_held(srv, octets: int, ip: str | None = "127.0.0.1", seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while (now := held(srv, ip)) != octets:
        assert time.monotonic() < deadline, f"held {now}, expected {octets}"
        time.sleep(0.01)


def test_data_past_the_address_share_is_read_discarded_and_refused_452_4_3_1(server_factory, logs):
    srv = start_server(server_factory)
    first, content = two_thirds_by_data(srv)

    second = transaction(srv)
    assert second.cmd("DATA")[0] == 354
    # Past the 3 MB share while it arrives: the rest is read without being kept.
    second.send(body(2 * MB + 19) + b".\r\n")
    code, text = second.reply()
    assert (code, text[0][:5]) == (452, "4.3.1")
    assert "Insufficient system storage" in text[0]
    assert second.cmd("NOOP")[0] == 250  # the stream stayed in step
    assert logs.matching("127.0.0.1: message memory full while the message arrived")
    assert held(srv) == len(content)

    first.send(b".\r\n")
    assert first.reply()[0] == 250
    assert srv.messages("alice@example.test")[-1].endswith(stored(content))
    assert len(srv.messages("alice@example.test")) == 1
    for w in (first, second):
        w.close()
    wait_held(srv, 0, ip=None)


def test_full_share_refuses_data_and_bdat_at_their_start(server_factory):
    srv = start_server(server_factory)
    first, chunk = two_thirds_by_bdat(srv)
    second = transaction(srv)
    rest = LINE * 9_999 + b"y" * 79 + b"\r\n"  # 1 MB - 19: the two fill the 3 MB share
    second.send(b"BDAT %d\r\n" % len(rest) + rest)
    assert second.reply()[0] == 250  # the share is full, not past
    wait_held(srv, 3 * MB)

    third = transaction(srv)
    code, text = third.cmd("DATA")
    assert (code, text[:5]) == (452, "4.3.1")  # before a body is sent: no 354
    third.send(b"BDAT 5 LAST\r\nabcde")  # RFC 3030 §3: the chunk is read even when refused
    code, text = third.reply()
    assert (code, text[0][:5]) == (452, "4.3.1")
    assert third.cmd("NOOP")[0] == 250

    assert second.cmd("RSET")[0] == 250
    wait_held(srv, len(chunk))
    first.send(b"BDAT 0 LAST\r\n")
    assert first.reply()[0] == 250
    assert srv.messages("alice@example.test")[-1].endswith(stored(chunk))
    wait_held(srv, 0, ip=None)
    # A message of the share's full size is accepted now.
    assert third.cmd("RSET")[0] == 250
    assert third.cmd("MAIL FROM:<b@remote.test>")[0] == 250
    assert third.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert third.cmd("DATA")[0] == 354
    whole = body(3 * MB - 81)
    third.send(whole + b".\r\n")
    assert third.reply()[0] == 250
    assert srv.messages("alice@example.test")[-1].endswith(stored(whole))
    assert held(srv, None) == 0


def test_bdat_chunk_past_the_share_fails_the_transaction_452_4_3_1(server_factory):
    srv = start_server(server_factory)
    first, chunk = two_thirds_by_bdat(srv)
    second = transaction(srv)
    second.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    code, text = second.reply()
    assert (code, text[0][:5]) == (452, "4.3.1")
    assert held(srv) == len(chunk)
    second.send(b"BDAT 3 LAST\r\nabc")
    assert second.reply()[0] == 503  # the transaction failed: RSET first
    assert second.cmd("RSET")[0] == 250
    first.close()
    second.close()
    wait_held(srv, 0, ip=None)


def test_connection_lost_mid_body_gives_its_memory_back(server_factory):
    srv = start_server(server_factory)
    w, content = two_thirds_by_data(srv)
    w.close()
    wait_held(srv, 0, ip=None)


def test_rset_between_bdat_chunks_gives_its_memory_back(server_factory):
    srv = start_server(server_factory)
    w = transaction(srv)
    chunk = body(MB + 19)
    w.send(b"BDAT %d\r\n" % len(chunk) + chunk)
    assert w.reply()[0] == 250
    assert held(srv) == len(chunk)
    assert w.cmd("RSET")[0] == 250
    assert held(srv, None) == 0


def test_refused_message_gives_its_memory_back(server_factory):
    srv = start_server(server_factory)
    w = transaction(srv)
    assert w.cmd("DATA")[0] == 354
    w.send(b"Subject: bare\r\n\r\nbare\nnewline\r\n" + LINE * 1000 + b".\r\n")
    assert w.reply()[0] == 554
    assert held(srv, None) == 0


def test_rfc1870_declared_size_that_cannot_fit_the_share_is_452_at_mail(server_factory):
    srv = start_server(server_factory)
    first, content = two_thirds_by_data(srv)
    w = Wire(srv.port("smtp"))
    assert w.cmd("EHLO client.remote.test")[0] == 250
    code, text = w.cmd("MAIL FROM:<b@remote.test> SIZE=1500000")
    assert (code, text[:5]) == (452, "4.3.1")
    assert w.cmd("MAIL FROM:<b@remote.test> SIZE=900000")[0] == 250
    assert w.cmd("RSET")[0] == 250
    assert w.cmd("MAIL FROM:<b@remote.test>")[0] == 250  # nothing declared: liberal


def test_authenticated_submission_counts_toward_the_total_only(server_factory):
    srv = start_server(server_factory)
    first, content = two_thirds_by_data(srv)
    # Same address, past its share: a logged-in user is not held to it.
    message = (
        b"From: alice@example.test\r\nTo: alice@example.test\r\nSubject: big\r\n\r\n"
        + LINE * 25_000
    )
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=60) as client:
        client.starttls(context=client_tls_context())
        client.login("alice@example.test", DEFAULT_PASSWORD)
        client.sendmail("alice@example.test", ["alice@example.test"], message)
    assert srv.messages("alice@example.test")[-1].endswith(stored(LINE * 25_000))
    assert held(srv, None) == len(content)


def test_total_bounds_authenticated_sessions_too(server_factory):
    srv = start_server(server_factory, message_memory=3 * MB)
    first, content = two_thirds_by_data(srv)
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=60) as client:
        client.starttls(context=client_tls_context())
        client.login("alice@example.test", DEFAULT_PASSWORD)
        try:
            client.sendmail("alice@example.test", ["alice@example.test"], HEADER + LINE * 20_000)
        except smtplib.SMTPResponseException as e:  # at MAIL (SIZE) or at the end of data
            refused = (e.smtp_code, e.smtp_error[:5])
        else:
            refused = None
    assert refused == (452, b"4.3.1")
    first.close()
    wait_held(srv, 0, ip=None)
