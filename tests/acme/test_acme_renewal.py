"""Renewal against pebble: short-lived certificates renewed on schedule, `cert renew` on
demand with the hot swap a connected client sees, and a failed challenge that leaves the old
certificate in service."""

from __future__ import annotations

import imaplib
import re
import ssl
import time

from tests.acme.pebble_support import NAMES, served_certificate, wait_for_issuer
from tests.trust.trust_support import on_reactor


def test_short_lived_certificate_is_renewed_when_a_third_of_its_life_is_left(acme_pair):
    # Pebble issues 15-second certificates here: renewal is due 10 s after each one starts.
    pebble, server = acme_pair("http-01", validity=15)
    first = wait_for_issuer(server.https, "Pebble", timeout=60)
    lifetime = first.not_valid_after_utc - first.not_valid_before_utc
    assert lifetime.total_seconds() <= 16
    second = wait_for_issuer(server.https, "Pebble", timeout=40, not_serial=first.serial_number)
    assert second.not_valid_after_utc > first.not_valid_after_utc
    assert served_certificate(server.imaps).serial_number == second.serial_number
    assert server.log_text().count("acme: new certificate for") >= 2
    assert "certificate order failed" not in server.log_text()


def _imap_over_tls(port: int) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=10)


def test_cert_renew_swaps_the_certificate_for_new_connections_only(acme_pair):
    pebble, server = acme_pair("tls-alpn-01")
    first = wait_for_issuer(server.imaps, "Pebble", timeout=60)
    client = _imap_over_tls(server.imaps)
    try:
        held = client.sock.getpeercert(binary_form=True)
        result = server.cli("cert", "renew", "--wait", "60")
        assert result.returncode == 0, result.stderr
        assert "renewed" in result.stdout
        # A new connection's handshake gets the new certificate at once ...
        fresh = served_certificate(server.imaps)
        assert fresh.serial_number != first.serial_number
        assert served_certificate(server.https).serial_number == fresh.serial_number
        # ... while the connection made before keeps its session and its certificate.
        assert client.noop()[0] == "OK"
        assert client.sock.getpeercert(binary_form=True) == held
    finally:
        client.logout()
    assert "asked by `mailsuite cert renew`" in server.log_text()


def test_failed_challenge_is_reported_and_the_old_certificate_stays(acme_pair, acme_zone):
    pebble, server = acme_pair("http-01")
    first = wait_for_issuer(server.https, "Pebble", timeout=60)

    def misdirect():
        acme_zone.clear()
        for name in NAMES:
            acme_zone.a(name, "127.0.0.2")  # nothing listens there: the CA cannot connect

    on_reactor(misdirect)
    result = server.cli("cert", "renew", "--wait", "60")
    assert result.returncode == 1
    assert "cert renew failed: validation of" in result.stderr
    status = server.cli("cert", "status")
    assert status.returncode == 0
    assert re.search(r"last attempt: .*: failed: validation of \S+ failed", status.stdout)
    assert "next attempt:" in status.stdout
    log = server.log_text()
    assert re.search(
        r"error mailsuite\.acme: acme: certificate order failed: validation of .* next attempt "
        r"in \d+ min; still serving the certificate valid until",
        log,
    )
    # The server goes on, with the certificate it had.
    assert server.process.poll() is None
    assert served_certificate(server.https).serial_number == first.serial_number
    assert served_certificate(server.imaps).serial_number == first.serial_number
    # No tight loop: one attempt for the request, the next only after the back-off.
    time.sleep(2)
    assert server.log_text().count("acme: ordering a certificate") == 2
