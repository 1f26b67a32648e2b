"""The challenge answers on mailsuite's own listeners, in process: http-01 on the web listener,
tls-alpn-01 (RFC 8737) on the TLS listeners through the ALPN callback, and a CA that cannot be
reached (one logged failure, the temporary certificate kept)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509

from mailsuite.acme.challenges import ACME_IDENTIFIER_OID
from mailsuite.acme.files import AcmeFiles

UNREACHABLE_CA = "https://127.0.0.1:9/directory"


@pytest.fixture
def acme_server(server_factory, logs):
    def make(challenge: str):
        srv = server_factory(
            listen={"https": ["127.0.0.1:0"]},
            acme={"directory": UNREACHABLE_CA, "challenge": challenge},
        )
        deadline = time.monotonic() + 10
        while not logs.matching("certificate order failed"):
            assert time.monotonic() < deadline, logs.lines()
            time.sleep(0.05)
        return srv

    return make


def handshake(port: int, server_name: str, alpn: list[str] | None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol()


def test_unreachable_ca_is_one_logged_failure_and_the_temporary_certificate_stays(
    acme_server, logs
):
    srv = acme_server("http-01")
    line = logs.matching("certificate order failed")[0]
    assert "cannot reach the CA" in line
    assert "next attempt in" in line and "temporary self-signed certificate" in line
    assert logs.matching("serving a temporary self-signed one")
    state = AcmeFiles(srv.config.data_dir).load_state()
    assert state.attempts == 1 and state.failures == 1
    assert state.next_attempt - state.last_attempt >= 300  # the back-off, not a tight loop
    cert, _ = handshake(srv.port("imaps"), "mail.example.test", None)
    assert cert.issuer == cert.subject  # self-signed


def test_http01_answer_is_served_under_well_known_acme_challenge(acme_server):
    srv = acme_server("http-01")
    srv.services.acme.challenges.post_http("Tok_en-123", "Tok_en-123.thumb")
    base = f"http://127.0.0.1:{srv.port('http')}/.well-known/acme-challenge/"
    with urllib.request.urlopen(base + "Tok_en-123", timeout=5) as reply:
        assert reply.status == 200
        assert reply.read() == b"Tok_en-123.thumb"
        assert reply.headers["content-type"] == "application/octet-stream"
    for other in ("tok_en-123", "unknown", ""):  # tokens are case-sensitive; nothing else leaks
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + other, timeout=5)
        assert e.value.code == 404
    srv.services.acme.challenges.withdraw(token="Tok_en-123")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(base + "Tok_en-123", timeout=5)
    assert e.value.code == 404


def test_tls_alpn01_validation_certificate_only_for_acme_tls_1(acme_server):
    srv = acme_server("tls-alpn-01")
    srv.services.acme.challenges.post_alpn("mail.example.test", "token.thumb")
    port = srv.port("https")
    cert, alpn = handshake(port, "mail.example.test", ["acme-tls/1"])
    assert alpn == "acme-tls/1"
    ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    assert ext.critical
    assert ext.value.value == b"\x04\x20" + hashlib.sha256(b"token.thumb").digest()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mail.example.test"]
    # Ordinary clients (with or without ALPN), and a name without a pending challenge, get the
    # served certificate and no ALPN protocol.
    served, _ = handshake(port, "mail.example.test", None)
    for name, offer in (("mail.example.test", ["h2", "http/1.1"]), ("other.test", ["acme-tls/1"])):
        cert, alpn = handshake(port, name, offer)
        assert alpn is None
        assert cert.serial_number == served.serial_number
    # The same on the other TLS listeners, which share the context.
    cert, alpn = handshake(srv.port("imaps"), "mail.example.test", ["acme-tls/1"])
    assert alpn == "acme-tls/1"
