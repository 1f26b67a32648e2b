"""Inbound trust checks end to end: smtplib → our "smtp" listener → check_inbound → Maildir."""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import DEFAULT_PASSWORD

ALICE = "alice@example.test"


def message(from_addr: str, extra: bytes = b"") -> bytes:
    return (
        f"From: <{from_addr}>\r\nTo: <{ALICE}>\r\nSubject: hi\r\nMessage-ID: <x@y>\r\n".encode()
        + extra
        + b"\r\nHello.\r\n"
    )


@pytest.fixture
def server(server_factory, stub_dns_server, zone):
    # The test client is on loopback, which is skipped by default: check it here.
    trust = {"resolvers": [stub_dns_server.address], "dns_timeout": 1.0, "skip_networks": []}
    srv = server_factory(trust=trust)
    srv.add_user(ALICE)
    return srv


def send(server, mail_from: str, data: bytes, helo: str = "out.sender.example"):
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), local_hostname=helo, timeout=10) as s:
        return s.sendmail(mail_from, [ALICE], data)


def test_dmarc_reject_refused_after_data(server, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, "bounce@unrelated.example", message("ceo@example.org"))
    assert e.value.smtp_code == 550
    assert e.value.smtp_error.startswith(b"5.7.1")
    assert server.messages(ALICE) == []


def test_dmarc_quarantine_delivered_to_junk_with_header(server, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=quarantine")
    forged = b"Authentication-Results: mail.example.test; dmarc=pass header.from=example.org\r\n"
    send(server, "bounce@unrelated.example", message("ceo@example.org", forged))
    assert server.messages(ALICE) == []
    (stored,) = server.messages(ALICE, "Junk")
    head = stored.split(b"\n\n", 1)[0]
    fields = [f for f in head.split(b"\n") if f.startswith(b"Authentication-Results:")]
    assert fields == [b"Authentication-Results: mail.example.test;"]
    assert b"dmarc=fail (p=quarantine dis=quarantine) header.from=example.org" in head
    assert head.startswith(b"Return-Path:") or head.startswith(b"Received:")


def test_spf_pass_accepted_into_inbox(server, zone):
    zone.txt("example.org", "v=spf1 ip4:127.0.0.0/8 -all")
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    send(server, "news@example.org", message("news@example.org"))
    (stored,) = server.messages(ALICE)
    assert b"spf=pass smtp.mailfrom=news@example.org" in stored
    assert b"dmarc=pass" in stored


def test_spf_hard_fail_refused(server, zone):
    zone.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, "news@example.org", message("news@example.org"))
    assert e.value.smtp_code == 550 and e.value.smtp_error.startswith(b"5.7.23")


def test_dns_failure_is_451(server, zone):
    zone.servfail("_dmarc.example.org")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(server, "bounce@unrelated.example", message("ceo@example.org"))
    assert e.value.smtp_code == 451


def test_submission_is_not_checked(server, zone, tls_context):
    zone.txt("_dmarc.example.test", "v=DMARC1; p=reject")
    zone.txt("example.test", "v=spf1 -all")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        s.starttls(context=tls_context)
        s.login(ALICE, DEFAULT_PASSWORD)
        s.sendmail(ALICE, [ALICE], message(ALICE))
    (stored,) = server.messages(ALICE)
    assert b"Authentication-Results" not in stored
