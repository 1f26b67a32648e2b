"""RFC 3464 DSN composition (pure) and the RFC 3461 rules for who gets one."""

import email
import email.policy

import pytest

from mailsuite.spool import bounce
from mailsuite.spool.queue import FAILED, QueuedRecipient, QueueEntry

ORIGINAL = b"From: a@example.test\r\nSubject: original\r\n\r\nsecret body\r\n"


def entry(**kw):
    base = dict(
        id="X1",
        mail_from="a@example.test",
        recipients=[QueuedRecipient("r@remote.test", orcpt="rfc822;R+2Bx@remote.test")],
        created=1_700_000_000.0,
    )
    base.update(kw)
    return QueueEntry(**base)


@pytest.mark.parametrize(
    "notify, action, wanted",
    [
        (None, bounce.FAILED, True),
        (None, bounce.DELAYED, True),
        (None, bounce.RELAYED, False),
        (["NEVER"], bounce.FAILED, False),
        (["SUCCESS"], bounce.FAILED, False),
        (["SUCCESS"], bounce.RELAYED, True),
        (["FAILURE"], bounce.DELAYED, False),
        (["DELAY", "FAILURE"], bounce.DELAYED, True),
    ],
)
def test_notify_rules(notify, action, wanted):
    assert bounce.wants_notice(QueuedRecipient("x@y", notify=notify), action) is wanted


def test_no_dsn_to_null_sender_or_about_a_dsn():
    assert not bounce.should_notify(entry(mail_from=""))
    assert not bounce.should_notify(entry(is_bounce=True))
    assert bounce.should_notify(entry())


def test_failure_dsn_structure():
    e = entry(dsn_envid="Q+3DZ")
    r = e.recipients[0]
    r.state, r.status, r.diagnostic, r.remote_mta = FAILED, "5.2.2", "552 mailbox full", "mx.test"
    raw = bounce.compose_dsn(e, [bounce.Report(r, bounce.FAILED)], ORIGINAL, "mail.example.test")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    human, status, returned = msg.iter_parts()
    assert "r@remote.test" in human.get_content()
    per_msg, per_rcpt = status.get_payload()
    assert per_msg["Original-Envelope-Id"] == "Q=Z"
    assert per_msg["Arrival-Date"]
    assert per_rcpt["Original-Recipient"] == "rfc822; R+x@remote.test"
    assert per_rcpt["Remote-MTA"] == "dns; mx.test"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 552 mailbox full"
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_payload()[0]["Subject"] == "original"


def test_big_message_returns_header_only():
    e = entry()
    r = e.recipients[0]
    r.state, r.status = FAILED, "5.0.0"
    big = ORIGINAL + b"x" * (bounce.MAX_RETURNED_MESSAGE + 1)
    raw = bounce.compose_dsn(e, [bounce.Report(r, bounce.FAILED)], big, "h.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert list(msg.iter_parts())[2].get_content_type() == "text/rfc822-headers"
    assert len(raw) < 10_000


def test_delay_dsn_has_will_retry_until():
    e = entry()
    r = e.recipients[0]
    r.status, r.diagnostic = "4.4.1", "connect to mx.test failed"
    raw = bounce.compose_dsn(e, [bounce.Report(r, bounce.DELAYED)], ORIGINAL, "h.test")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    per_rcpt = list(msg.iter_parts())[1].get_payload()[1]
    assert per_rcpt["Action"] == "delayed" and per_rcpt["Status"] == "4.4.1"
    assert per_rcpt["Will-Retry-Until"]
    assert per_rcpt["Diagnostic-Code"].startswith("X-mailsuite;")
    assert b"secret body" not in raw
