"""Two mailsuite instances: mail submitted to one is relayed to the other over SMTP, and the
receiver's rejection comes back to the sender as a DSN in her mailbox."""

import email
import email.policy
import smtplib

from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.relay.relay_support import wait_for


def test_submission_relayed_to_second_instance_with_bounce_back(server_factory):
    receiver = server_factory("receiver", domains=["remote.test"], hostname="mx.remote.test")
    receiver.add_user("bob@remote.test")
    sender = server_factory(
        "sender",
        relay={
            "routes": {"remote.test": f"127.0.0.1:{receiver.port('smtp')}"},
            "scan_interval": 0.1,
            "retry_schedule": [1],
        },
    )
    sender.add_user("alice@example.test")
    body = (
        "From: alice@example.test\r\nTo: bob@remote.test\r\nSubject: across\r\n\r\n"
        ".leading dot line\r\n.\r\nend\r\n"
    )
    with smtplib.SMTP("127.0.0.1", sender.port("submission"), timeout=10) as c:
        c.starttls(context=client_tls_context())
        c.login("alice@example.test", DEFAULT_PASSWORD)
        refused = c.sendmail(
            "alice@example.test", ["bob@remote.test", "nobody@remote.test"], body.encode()
        )
        assert refused == {}
    (got,) = wait_for(lambda: receiver.messages("bob@remote.test"), timeout=15)
    msg = email.message_from_bytes(got, policy=email.policy.default)
    assert msg["Subject"] == "across"
    assert msg.get_content().replace("\r\n", "\n").endswith(".leading dot line\n.\nend\n")
    (dsn,) = wait_for(lambda: sender.messages("alice@example.test"), timeout=15)
    report = email.message_from_bytes(dsn, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = list(report.iter_parts())[1].get_payload()[1]
    assert status["Final-Recipient"] == "rfc822; nobody@remote.test"
    assert status["Action"] == "failed" and status["Status"].startswith("5.1.")
    wait_for(lambda: not sender.services.queue.ids(), timeout=10)
