"""RFC 3461 notices about local recipients of an accepted message (delivery.py)."""

import email
import smtplib
import time

from tests.conftest import client_tls_context

BIG = b"x" * 70 + b"\r\n"
BIG = BIG * 80  # 5.7 KB in short lines


def _wait_for(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _send_without_size(srv, sender: str, data: bytes) -> None:
    """No SIZE parameter, so the quota is only found out after DATA, not at RCPT."""
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        s.ehlo()
        assert s.mail(sender)[0] == 250
        assert s.rcpt("carol@example.test")[0] == 250
        assert s.rcpt("dave@example.test")[0] == 250
        assert s.data(data)[0] == 250


def _report_fields(raw: bytes) -> tuple[str, list]:
    msg = email.message_from_bytes(raw)
    assert msg.get_content_type() == "multipart/report"
    status = next(p for p in msg.walk() if p.get_content_type() == "message/delivery-status")
    groups = status.get_payload()
    return msg["Subject"], [dict(g.items()) for g in groups]


def test_notify_success_gives_the_local_sender_a_delivered_dsn(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user("alice@example.test")
    srv.add_user("bob@example.test")
    with smtplib.SMTP("127.0.0.1", srv.port("submission")) as s:
        s.starttls(context=client_tls_context())
        s.login("alice@example.test", "secret-Passw0rd")
        s.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            b"From: alice@example.test\r\nSubject: hi\r\n\r\nbody\r\n",
            rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;bob@example.test"],
        )
    assert len(srv.messages("bob@example.test")) == 1
    assert _wait_for(lambda: len(srv.messages("alice@example.test")) == 1)
    subject, groups = _report_fields(srv.messages("alice@example.test")[0])
    fields = groups[1]
    assert fields["Action"] == "delivered"
    assert fields["Status"].startswith("2.")
    assert "bob@example.test" in fields["Final-Recipient"]


def test_one_mailbox_over_quota_others_delivered_sender_gets_failure_dsn(server_factory):
    srv = server_factory()
    srv.add_user("carol@example.test", quota_bytes=1000)
    srv.add_user("dave@example.test")
    srv.add_user("erin@example.test")
    _send_without_size(srv, "erin@example.test", b"Subject: big\r\n\r\n" + BIG)
    assert len(srv.messages("dave@example.test")) == 1
    assert srv.messages("carol@example.test") == []
    assert _wait_for(lambda: len(srv.messages("erin@example.test")) == 1)
    subject, groups = _report_fields(srv.messages("erin@example.test")[0])
    assert groups[1]["Action"] == "failed"
    assert groups[1]["Status"] == "5.2.2"
    assert "carol@example.test" in groups[1]["Final-Recipient"]


def test_no_notice_to_the_null_sender(server_factory):
    srv = server_factory()
    srv.add_user("carol@example.test", quota_bytes=1000)
    srv.add_user("dave@example.test")
    _send_without_size(srv, "", b"Subject: b\r\n\r\n" + BIG)
    assert len(srv.messages("dave@example.test")) == 1
    assert list(srv.config.queue_dir.glob("env/*")) == []
