"""The ESMTP client against the scripted server on loopback: pipelining, dot-stuffing across
16 KiB chunk boundaries, per-recipient results, STARTTLS, SIZE, SMTPUTF8, timeouts, drops."""

import time

import pytest

from mailsuite.relay.client import SessionParams, Timeouts, TlsHandshakeFailed, connect
from mailsuite.relay.mx import Destination
from mailsuite.relay.reply import DeliveryFailure
from mailsuite.spool.queue import QueuedRecipient
from tests.relay.relay_support import in_reactor

MSG = b"From: s@example.test\r\nTo: r@remote.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def rcpts(*addrs, notify=None):
    return [QueuedRecipient(a, notify=notify, orcpt=f"rfc822;{a}") for a in addrs]


def send(sink, recipients, data=MSG, mail_from="s@example.test", tls="opportunistic", **t):
    timeouts = Timeouts(
        **{
            "connect": 2,
            "greeting": 2,
            "command": 2,
            "data_init": 2,
            "data_block": 2,
            "data_end": 2,
            **t,
        }
    )
    params = SessionParams("mail.example.test", tls, timeouts)

    address = getattr(sink, "address", "127.0.0.1")

    async def go():
        conn = await connect(Destination("sink.test", address, sink.port), params)
        try:
            outcomes = await conn.send_message(mail_from, recipients, data, "HDRS", "E1")
            return outcomes, conn
        finally:
            await conn.quit()

    return in_reactor(go)


def test_pipelined_delivery_with_starttls_and_dsn_params(sink):
    outcomes, conn = send(sink, rcpts("a@remote.test", "b@remote.test", notify=["SUCCESS"]))
    assert [o.result for o in outcomes] == ["delivered", "delivered"]
    assert conn.tls
    (t,) = sink.transactions
    assert t.tls and t.accepted == ["a@remote.test", "b@remote.test"]
    assert t.data == MSG
    # RFC 3207 §4.2: EHLO again after TLS; RFC 2920: MAIL, RCPTs, DATA in one group.
    assert [c.split()[0] for c in sink.commands[:3]] == ["EHLO", "STARTTLS", "EHLO"]
    assert "RET=HDRS" in sink.mail_lines[0] and "ENVID=E1" in sink.mail_lines[0]
    assert "SIZE=" in sink.mail_lines[0]
    assert sink.rcpt_lines[0] == "RCPT TO:<a@remote.test> NOTIFY=SUCCESS ORCPT=rfc822;a@remote.test"


def test_without_pipelining_and_dsn_commands_go_one_by_one(sink):
    sink.script.extensions = ["8BITMIME"]
    outcomes, _ = send(sink, rcpts("a@remote.test"), data="Subject: x\r\n\r\nüber\r\n".encode())
    assert outcomes[0].result == "delivered"
    assert sink.mail_lines == ["MAIL FROM:<s@example.test> BODY=8BITMIME"]
    assert sink.rcpt_lines == ["RCPT TO:<a@remote.test>"]


def test_one_of_three_recipients_rejected_permanently(sink):
    sink.script.rcpt["b@remote.test"] = "550 5.1.1 no such user"
    outcomes, _ = send(sink, rcpts("a@remote.test", "b@remote.test", "c@remote.test"))
    assert [o.result for o in outcomes] == ["delivered", "permanent", "delivered"]
    assert outcomes[1].status == "5.1.1" and outcomes[1].diagnostic == "550 no such user"
    assert sink.transactions[0].accepted == ["a@remote.test", "c@remote.test"]


def test_temporary_rcpt_and_data_failures_are_temporary(sink):
    sink.script.rcpt["a@remote.test"] = "452 4.2.2 mailbox full"
    sink.script.data_end = ["451 4.3.0 try again later"]
    outcomes, _ = send(sink, rcpts("a@remote.test", "b@remote.test"))
    assert [o.result for o in outcomes] == ["temporary", "temporary"]
    assert [o.status for o in outcomes] == ["4.2.2", "4.3.0"]


def test_all_recipients_rejected_sends_no_data(sink):
    sink.script.rcpt["a@remote.test"] = "550 5.1.1 unknown"
    outcomes, _ = send(sink, rcpts("a@remote.test"))
    assert outcomes[0].result == "permanent"
    assert sink.transactions == [] and sink.data_count == 0


@pytest.mark.parametrize("base", [16 * 1024, 32 * 1024, 64 * 1024])
def test_lone_dot_lines_at_every_offset_around_chunk_boundaries(sink, base):
    # A line of exactly "." placed at every offset from base-6 to base+6 of the message.
    parts = [b"Subject: dots\r\n\r\n"]
    size = len(parts[0])
    for target in range(base - 6, base + 7):
        pad = target - size - 2
        if pad < 0:
            continue
        parts.append(b"y" * pad + b"\r\n.\r\n")
        size += pad + 5
    data = b"".join(parts) + b"tail\r\n"
    outcomes, _ = send(sink, rcpts("a@remote.test"), data=data)
    assert outcomes[0].result == "delivered"
    assert sink.transactions[0].data == data


def test_size_over_server_limit_fails_before_mail(sink):
    sink.script.extensions = ["SIZE 100", "PIPELINING"]
    outcomes, _ = send(sink, rcpts("a@remote.test"), data=b"Subject: x\r\n\r\n" + b"z" * 200)
    assert outcomes[0].result == "permanent" and outcomes[0].status == "5.3.4"
    assert sink.mail_lines == []


def test_smtputf8_needed_but_not_offered_is_5_6_7(sink):
    sink.script.extensions = ["PIPELINING", "8BITMIME"]
    outcomes, _ = send(sink, rcpts("jörg@remote.test"))
    assert outcomes[0].result == "permanent" and outcomes[0].status == "5.6.7"
    assert sink.mail_lines == []


def test_utf8_header_sent_without_smtputf8_when_not_offered(sink):
    sink.script.extensions = ["PIPELINING", "8BITMIME"]
    data = "Subject: grüße\r\n\r\nbody\r\n".encode()
    outcomes, _ = send(sink, rcpts("a@remote.test"), data=data)
    assert outcomes[0].result == "delivered"
    assert sink.mail_lines == ["MAIL FROM:<s@example.test> BODY=8BITMIME"]
    assert sink.transactions[0].data == data


def test_smtputf8_passed_when_offered(sink):
    outcomes, _ = send(sink, rcpts("jörg@remote.test"), mail_from="zoë@example.test")
    assert outcomes[0].result == "delivered"
    assert sink.mail_lines[0].startswith("MAIL FROM:<zoë@example.test>")
    assert "SMTPUTF8" in sink.mail_lines[0]


def test_starttls_refused_continues_in_clear(sink):
    sink.script.starttls = "refuse"
    outcomes, conn = send(sink, rcpts("a@remote.test"))
    assert outcomes[0].result == "delivered" and not conn.tls


def test_starttls_refused_when_required_fails_temporarily(sink):
    sink.script.starttls = "refuse"
    with pytest.raises(DeliveryFailure) as ei:
        send(sink, rcpts("a@remote.test"), tls="required")
    assert not ei.value.permanent


def test_broken_tls_handshake_reported_as_such(sink):
    sink.script.starttls = "break"
    with pytest.raises(TlsHandshakeFailed):
        send(sink, rcpts("a@remote.test"))


def test_slow_reply_past_timeout_is_temporary(sink):
    sink.script.slow["MAIL"] = 1.5
    with pytest.raises(DeliveryFailure) as ei:
        send(sink, rcpts("a@remote.test"), command=0.5)
    assert ei.value.status == "4.4.2" and "no reply" in ei.value.text


def test_slow_final_reply_waits_for_data_timeout(sink):
    sink.script.slow["DATA-END"] = 0.6
    outcomes, _ = send(sink, rcpts("a@remote.test"), command=0.3, data_end=2)
    assert outcomes[0].result == "delivered"


def test_short_timeout_after_a_long_one_on_the_same_session_still_holds(sink):
    # The session's one timer was set for the long wait of the first end of data; the
    # second transaction's MAIL must still time out after its own, shorter, timeout.
    sink.script.slow["DATA-END"] = 0.3
    timeouts = Timeouts(connect=2, greeting=2, command=0.5, data_init=2, data_block=2, data_end=5)
    params = SessionParams("mail.example.test", "none", timeouts)

    async def go():
        conn = await connect(Destination("sink.test", "127.0.0.1", sink.port), params)
        first = await conn.send_message("s@example.test", rcpts("a@remote.test"), MSG)
        sink.script.slow = {"MAIL": 3.0}
        started = time.monotonic()
        try:
            await conn.send_message("s@example.test", rcpts("b@remote.test"), MSG)
        except DeliveryFailure as e:
            return first, e, time.monotonic() - started
        finally:
            conn.abort()
        raise AssertionError("the slow MAIL did not time out")

    first, failure, waited = in_reactor(go)
    assert first[0].result == "delivered"
    assert failure.status == "4.4.2" and "no reply within 0.5 s" in failure.text
    assert 0.4 < waited < 1.5


def test_connection_dropped_mid_data_is_temporary(sink):
    sink.script.drop_after = 1000
    with pytest.raises(DeliveryFailure) as ei:
        send(sink, rcpts("a@remote.test"), data=b"Subject: big\r\n\r\n" + b"q" * 50_000)
    assert not ei.value.permanent
    assert sink.transactions == []


def test_refused_connection_is_temporary():
    async def go():
        t = Timeouts(connect=1)
        await connect(Destination("none.test", "127.0.0.1", 1), SessionParams("h", "none", t))

    with pytest.raises(DeliveryFailure) as ei:
        in_reactor(go)
    assert ei.value.status == "4.4.1"


def test_greeting_554_is_a_failure(sink):
    sink.script.greeting = "554 5.7.1 go away"
    with pytest.raises(DeliveryFailure) as ei:
        send(sink, rcpts("a@remote.test"))
    assert ei.value.permanent


def test_old_server_without_ehlo_gets_helo(sink):
    # RFC 5321 §3.2: EHLO refused with 502 → HELO, and no extensions are used.
    sink.script.ehlo_reply = "502 5.5.1 command not implemented"
    outcomes, conn = send(sink, rcpts("a@remote.test"))
    assert outcomes[0].result == "delivered" and conn.ext == {} and not conn.tls
    assert [c.split()[0] for c in sink.commands[:3]] == ["EHLO", "HELO", "MAIL"]
    assert sink.mail_lines == ["MAIL FROM:<s@example.test>"]


def test_ipv6_destination(sink6):
    outcomes, _ = send(sink6, rcpts("a@remote.test"))
    assert outcomes[0].result == "delivered"


def test_cached_session_rsets_only_after_an_unfinished_transaction(sink):
    sink.script.rcpt["bad@remote.test"] = "550 5.1.1 unknown"
    params = SessionParams("mail.example.test", "none", Timeouts(command=2, data_end=2))

    async def go():
        conn = await connect(Destination("sink.test", "127.0.0.1", sink.port), params)
        results = []
        for rcpt in ("a@remote.test", "b@remote.test", "bad@remote.test", "c@remote.test"):
            results += await conn.send_message("s@example.test", rcpts(rcpt), MSG)
        await conn.quit()
        return results

    outcomes = in_reactor(go)
    assert [o.result for o in outcomes] == ["delivered", "delivered", "permanent", "delivered"]
    verbs = [c.split()[0].upper() for c in sink.commands if c.split()]
    # RFC 5321 §3.3: a finished DATA leaves a clean session; the refused RCPT needs RSET.
    assert verbs.count("RSET") == 1
    assert verbs.index("RSET") > verbs.index(
        "RCPT", verbs.index("RCPT", verbs.index("RCPT") + 1) + 1
    )
    assert len(sink.transactions) == 3 and sink.connections == 1
