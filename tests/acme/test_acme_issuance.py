"""Issuance at first start against a real ACME server (pebble), for both challenge types."""

from __future__ import annotations

import stat

import pytest

from tests.acme.pebble_support import NAMES, issuer_cn, served_certificate, wait_for_issuer


def san_names(cert) -> list[str]:
    from cryptography import x509

    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_first_start_serves_temporary_then_the_issued_certificate(acme_pair, challenge):
    pebble, server = acme_pair(challenge)
    cert = wait_for_issuer(server.https, "Pebble", timeout=60)
    assert sorted(san_names(cert)) == sorted(NAMES)
    # Every TLS listener serves it, not only the one the CA validated on.
    assert served_certificate(server.imaps).serial_number == cert.serial_number
    log = server.log_text()
    assert "serving a temporary self-signed one" in log
    assert "acme: new certificate for" in log
    acme = server.data / "acme"
    assert stat.S_IMODE(acme.stat().st_mode) == 0o700
    for name in ("account.key", "account.json", "cert.pem", "cert.key", "state.json"):
        assert stat.S_IMODE((acme / name).stat().st_mode) == 0o600, name
    status = server.cli("cert", "status")
    assert status.returncode == 0, status.stderr
    assert "Pebble Intermediate CA" in status.stdout
    assert "mta-sts.example.test" in status.stdout
    assert ": ok" in status.stdout
    assert "server: running" in status.stdout
    assert server.process.poll() is None
    assert issuer_cn(cert).startswith("Pebble")
