"""One TLS setup for every listener: TLS 1.2 at least, a self-signed certificate made when none
is configured (key 0600), and reload() (SIGHUP) swapping the certificate for new connections."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailsuite.config import config_from_dict
from mailsuite.tls import TlsContexts, TlsError, fingerprint, make_self_signed
from tests.conftest import base_config, run_cli, toml_dumps

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
    with pytest.raises(TlsError, match="is not a PEM certificate"):
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


def test_the_self_signed_certificate_is_an_end_entity_for_every_name(tmp_path):
    raw = base_config(
        tmp_path,
        hostname="mx.tls.test",
        public={"host": "mail.public.test"},
        listen={"imaps": ["127.0.0.2:0"], "smtp": ["localhost:0"], "http": ["[::1]:0"]},
    )
    cfg = config_from_dict(raw, base=tmp_path)
    TlsContexts(cfg)
    cert = x509.load_pem_x509_certificate(cfg.tls.cert.read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.value.ca is False and basic.critical
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mx.tls.test", "mail.public.test", "localhost"]
    # Listen addresses given as IP addresses are no names: a client reaching the server by
    # address does not verify it by that address.
    assert san.get_values_for_type(x509.IPAddress) == []


def test_python_verifies_the_self_signed_certificate_as_a_server_certificate(server_factory):
    """A client that trusts the certificate (as a user who accepted it) verifies the
    handshake by host name: refused if the certificate were a CA or lacked the name."""
    srv = server_factory(hostname="mx.verify.test")
    ctx = ssl.create_default_context(cafile=str(srv.config.tls.cert))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.create_connection(("127.0.0.1", srv.port("imaps")), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="mx.verify.test") as tls:
            assert tls.recv(100).startswith(b"* OK")


def test_a_configured_certificate_that_does_not_exist_is_an_error_not_made_up(tmp_path):
    raw = base_config(tmp_path)
    del raw["tls"]["self_signed"]
    cfg = config_from_dict(raw, base=tmp_path)
    assert cfg.tls.self_signed is False
    with pytest.raises(TlsError, match=r"certificate .*mail\.pem does not exist"):
        TlsContexts(cfg)
    assert not cfg.tls.cert.exists() and not cfg.tls.key.exists()
    # Left at their defaults, the paths are the self-signed pair's.
    default = config_from_dict({}, base=tmp_path)
    assert default.tls.self_signed and default.tls.cert == tmp_path / "certs" / "mail.pem"


def write_pair(folder, name: str):
    make_self_signed(folder / f"{name}.pem", folder / f"{name}.key", f"{name}.test")
    return folder / f"{name}.pem", folder / f"{name}.key"


def broken_sites(tmp_path):
    """(name, cert, key, the words the operator must read)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cert_a, key_a = write_pair(tmp_path, "a")
    cert_b, key_b = write_pair(tmp_path, "b")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    return [
        ("mismatch", cert_a, key_b, "does not match the certificate"),
        ("garbage", garbage, key_a, "is not a PEM certificate"),
        ("key garbage", cert_a, garbage, "is not a PEM private key"),
        ("missing key", cert_a, tmp_path / "nokey.pem", "nokey.pem does not exist"),
    ]


@pytest.mark.parametrize("index", range(4))
def test_check_and_serve_say_what_is_wrong_with_the_certificate_and_exit_78(tmp_path, index):
    name, cert, key, words = broken_sites(tmp_path / "pki")[index]
    raw = base_config(tmp_path, tls={"cert": str(cert), "key": str(key), "self_signed": False})
    conf = tmp_path / "mailsuite.toml"
    conf.write_text(toml_dumps(raw))
    check = run_cli("--config", str(conf), "check")
    assert check.returncode == 78, (name, check.stdout, check.stderr)
    assert words in check.stderr.decode(), name
    served = run_cli("--config", str(conf), "serve")
    assert served.returncode == 78, (name, served.stdout, served.stderr)
    assert words in served.stdout.decode() + served.stderr.decode(), name
    assert "Traceback" not in served.stdout.decode() + served.stderr.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start as root and become nobody")
def test_a_key_the_server_user_cannot_read_is_permission_denied_in_check_and_serve():
    root = Path(tempfile.mkdtemp(prefix="mailsuite-tls-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        cert, key = write_pair(root, "site")  # key 0600, root's: nobody cannot read it
        cert.chmod(0o644)  # the certificate is public
        listen = {kind: [] for kind in ("submission", "submissions", "pop3", "pop3s")}
        listen.update({k: ["127.0.0.1:0"] for k in ("smtp", "imap", "imaps", "http")})
        raw = base_config(root, tls={"cert": str(cert), "key": str(key)}, listen=listen)
        raw.update(user="nobody", allow_root=False)
        raw["tls"]["self_signed"] = False
        conf = root / "mailsuite.toml"
        conf.write_text(toml_dumps(raw))
        for command in ("check", "serve"):
            result = run_cli("--config", str(conf), command)
            out = result.stdout.decode() + result.stderr.decode()
            assert result.returncode == 78, (command, out)
            assert f"permission denied reading the key {key}" in out, (command, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_check_loads_a_good_certificate_as_serve_does(tmp_path):
    cert, key = write_pair(tmp_path, "good")
    raw = base_config(tmp_path, tls={"cert": str(cert), "key": str(key)})
    conf = tmp_path / "mailsuite.toml"
    conf.write_text(toml_dumps(raw))
    result = run_cli("--config", str(conf), "check")
    assert result.returncode == 0, result.stderr
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)
    assert f"certificate {cert}: ok (self-signed" in result.stdout.decode()
    assert fingerprint(der) in result.stdout.decode()
