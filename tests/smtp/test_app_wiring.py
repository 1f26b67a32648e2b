"""The three SMTP listeners as `mailsuite serve` builds them (app.MailServer, shared fixture)."""

import smtplib

from tests.conftest import DEFAULT_PASSWORD, client_tls_context


def test_mailserver_serves_smtp_submission_and_submissions(mail_server):
    ctx = client_tls_context()
    alice = "alice@example.test"
    with smtplib.SMTP("127.0.0.1", mail_server.port("smtp"), timeout=10) as s:
        s.sendmail("ext@remote.test", [alice], b"Subject: via 25\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", mail_server.port("submission"), timeout=10) as s:
        s.starttls(context=ctx)
        s.login(alice, DEFAULT_PASSWORD)
        s.sendmail(alice, [alice], b"From: alice@example.test\r\nSubject: via 587\r\n\r\nx\r\n")
    with smtplib.SMTP_SSL(
        "127.0.0.1", mail_server.port("submissions"), context=ctx, timeout=10
    ) as s:
        s.login(alice, DEFAULT_PASSWORD)
        s.sendmail(alice, [alice], b"From: alice@example.test\r\nSubject: via 465\r\n\r\nx\r\n")
    subjects = sorted(
        line for m in mail_server.messages(alice) for line in m.split(b"\n") if b"Subject:" in line
    )
    assert subjects == [b"Subject: via 25", b"Subject: via 465", b"Subject: via 587"]
