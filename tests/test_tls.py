"""One TLS setup for every listener: TLS 1.2 at least, a self-signed certificate made when none
is configured (key 0600), and reload() (SIGHUP) swapping the certificate for new connections."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mailsuite.config import config_from_dict
from mailsuite.tls import TlsContexts, TlsError, fingerprint, make_self_signed
from tests.conftest import base_config

# ssl.TLSVersion.TLSv1(_1) are deprecated: exactly why the test uses them.
pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")


def client_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = version
    ctx.maximum_version = version
    # Let this OpenSSL offer the old protocol at all (security level 0), so the server refuses it.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def handshake(port: int, ctx: ssl.SSLContext) -> tuple[str, bytes]:
    """(negotiated version, server certificate DER)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.version(), tls.getpeercert(binary_form=True)


def permissive_server(cert, key) -> tuple[int, threading.Thread]:
    """A plain Python TLS server that accepts TLS 1.0-1.3: proves our client can speak 1.1."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_once():
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass
        finally:
            listener.close()

    t = threading.Thread(target=serve_once, daemon=True)
    t.start()
    return listener.getsockname()[1], t


def test_self_signed_certificate_is_made_when_missing(tmp_path):
    cfg = config_from_dict(base_config(tmp_path, hostname="mx.tls.test"), base=tmp_path)
    assert not cfg.tls.cert.exists()
    TlsContexts(cfg)
    assert stat.S_IMODE(cfg.tls.key.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cfg.tls.cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mx.tls.test"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.tls.test"]
    # Made once: a second start keeps the same certificate.
    before = cfg.tls.cert.read_bytes()
    TlsContexts(cfg)
    assert cfg.tls.cert.read_bytes() == before


def test_half_a_certificate_is_an_error(tmp_path):
    cfg = config_from_dict(base_config(tmp_path), base=tmp_path)
    cfg.tls.cert.parent.mkdir(parents=True)
    cfg.tls.cert.write_text("only the certificate")
    with pytest.raises(TlsError, match="only one of"):
        TlsContexts(cfg)


def test_unreadable_certificate_is_an_error(tmp_path):
    cfg = config_from_dict(base_config(tmp_path), base=tmp_path)
    cfg.tls.cert.parent.mkdir(parents=True)
    cfg.tls.cert.write_text("garbage")
    cfg.tls.key.write_text("garbage")
    with pytest.raises(TlsError, match="cannot load certificate"):
        TlsContexts(cfg)


@pytest.mark.parametrize("kind", ["imaps", "pop3s", "submissions"])
def test_tls_11_is_refused_and_12_13_accepted_on_real_listeners(server_factory, kind):
    srv = server_factory()
    port = srv.port(kind)
    assert handshake(port, client_context(ssl.TLSVersion.TLSv1_3))[0] == "TLSv1.3"
    assert handshake(port, client_context(ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as info:
        handshake(port, client_context(ssl.TLSVersion.TLSv1_1))
    assert "VERSION" in str(info.value).upper() or "UNSUPPORTED" in str(info.value).upper()
    # The refusal is the server's: the same client does TLS 1.1 with a server that allows it.
    cfg = srv.config
    other, t = permissive_server(str(cfg.tls.cert), str(cfg.tls.key))
    assert handshake(other, client_context(ssl.TLSVersion.TLSv1_1))[0] == "TLSv1.1"
    t.join(5)


def test_min_version_13_refuses_tls_12(server_factory):
    srv = server_factory(tls={"min_version": "1.3"})
    port = srv.port("imaps")
    assert handshake(port, client_context(ssl.TLSVersion.TLSv1_3))[0] == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        handshake(port, client_context(ssl.TLSVersion.TLSv1_2))


def test_reload_swaps_the_certificate_for_new_connections_only(server_factory):
    srv = server_factory()
    port = srv.port("imaps")
    ctx = client_context(ssl.TLSVersion.TLSv1_3)
    old_version, old_der = handshake(port, ctx)
    # An open connection from before the swap.
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    kept = ctx.wrap_socket(raw)
    assert kept.recv(4096).startswith(b"* OK")
    assert kept.getpeercert(binary_form=True) == old_der

    cfg = srv.config
    new_fp = make_self_signed(cfg.tls.cert, cfg.tls.key, "renewed.example.test")
    srv.call(srv.services.tls.reload)
    _, new_der = handshake(port, ctx)
    assert new_der != old_der and fingerprint(new_der) == new_fp
    # The old connection goes on with its certificate.
    kept.sendall(b"a1 NOOP\r\n")
    assert b"a1 OK" in kept.recv(4096)
    kept.close()


def test_reload_with_broken_files_keeps_serving_the_old_certificate(server_factory):
    srv = server_factory()
    port = srv.port("imaps")
    ctx = client_context(ssl.TLSVersion.TLSv1_2)
    _, before = handshake(port, ctx)
    srv.config.tls.cert.write_text("not a certificate any more")
    srv.call(srv.services.tls.reload)
    _, after = handshake(port, ctx)
    assert after == before
