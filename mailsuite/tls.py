"""One TLS setup for every listener: contexts from the configured certificate, self-signed when
missing, reloaded on SIGHUP (certbot renewals) or installed by the ACME client, for new
connections without touching open ones.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.logger import Logger
from zope.interface import implementer

from mailsuite.config import Config
from mailsuite.durable.modes import make_private_dirs

log = Logger(namespace="mailsuite.tls")

# Modern AEAD suites for TLS 1.2 (TLS 1.3 suites are fixed by OpenSSL).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


class TlsError(Exception):
    pass


def make_self_signed(cert_path: Path, key_path: Path, hostname: str) -> str:
    """Write a self-signed certificate for `hostname` (key mode 0600); returns its SHA-256
    fingerprint for the log."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    make_private_dirs(key_path.parent)
    make_private_dirs(cert_path.parent)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerOptions:
    """Hands each new connection the current context; `reload()` swaps it."""

    def __init__(self, contexts: TlsContexts):
        self._contexts = contexts

    def serverConnectionForTLS(self, tlsProtocol):
        return SSL.Connection(self._contexts.context, None)


# RFC 8737 §6.2: the ALPN protocol ID of the tls-alpn-01 challenge.
ACME_TLS_ALPN = b"acme-tls/1"

# What answers a tls-alpn-01 validation: server name -> (certificate, key), or None when no
# challenge is pending for that name.
AlpnResponder = Callable[[str], "tuple[x509.Certificate, PrivateKeyTypes] | None"]


class TlsContexts:
    """The one server context every TLS listener hands its new connections (implicit TLS and
    STARTTLS alike). `cert_path`/`key_path` default to `[tls]`; the ACME client passes its own
    files. With `alpn_responder`, a client offering only the ALPN protocol "acme-tls/1" is
    answered with the validation certificate the responder returns (RFC 8737 §3)."""

    def __init__(
        self,
        config: Config,
        cert_path: Path | None = None,
        key_path: Path | None = None,
        alpn_responder: AlpnResponder | None = None,
    ):
        self.config = config
        self.cert_path = cert_path or config.tls.cert
        self.key_path = key_path or config.tls.key
        self.alpn_responder = alpn_responder
        self.context: SSL.Context | None = None
        self.ensure_certificate()
        self.reload()
        self._options = ReloadableServerOptions(self)

    def ensure_certificate(self) -> None:
        if self.cert_path.exists() and self.key_path.exists():
            return
        if self.cert_path.exists() != self.key_path.exists():
            raise TlsError(f"only one of {self.cert_path} and {self.key_path} exists")
        fp = make_self_signed(self.cert_path, self.key_path, self.config.hostname)
        log.info(
            "made a self-signed certificate for {host} in {path}, SHA-256 fingerprint {fp}",
            host=self.config.hostname,
            path=str(self.cert_path),
            fp=fp,
        )

    def build_context(self, cert_path: Path, key_path: Path) -> SSL.Context:
        """A server context for the pair of files (blocking: it reads them); TlsError when they
        cannot be used."""
        ctx = SSL.Context(SSL.TLS_METHOD)
        minimum = SSL.TLS1_3_VERSION if self.config.tls.min_version == "1.3" else SSL.TLS1_2_VERSION
        ctx.set_min_proto_version(minimum)
        options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
        if not self.config.tls.session_tickets:
            options |= SSL.OP_NO_TICKET
        ctx.set_options(options)
        ctx.set_cipher_list(CIPHERS.encode())
        try:
            ctx.use_certificate_chain_file(str(cert_path))
            ctx.use_privatekey_file(str(key_path))
            ctx.check_privatekey()
        except (SSL.Error, OSError) as e:
            raise TlsError(f"cannot load certificate {cert_path} / key {key_path}: {e}") from None
        ctx.set_session_id(b"mailsuite")
        if self.alpn_responder is not None:
            ctx.set_alpn_select_callback(self._select_alpn)
        return ctx

    def _select_alpn(self, conn: SSL.Connection, offered: list[bytes]):
        """RFC 8737 §3: a validation connection offers "acme-tls/1" and gets the validation
        certificate for its SNI name; every other connection goes on without ALPN."""
        if ACME_TLS_ALPN not in offered:
            return SSL.NO_OVERLAPPING_PROTOCOLS
        raw = conn.get_servername()
        pair = self.alpn_responder(raw.decode("ascii", "replace").lower()) if raw else None
        if pair is None:
            return SSL.NO_OVERLAPPING_PROTOCOLS
        cert, key = pair
        conn.use_certificate(cert)
        conn.use_privatekey(key)
        return ACME_TLS_ALPN

    def reload(self) -> None:
        """Build a new context from the files; on error keep serving the old one."""
        try:
            ctx = self.build_context(self.cert_path, self.key_path)
        except TlsError as e:
            if self.context is None:
                raise
            log.error("certificate reload failed, keeping the old one: {err}", err=str(e))
            return
        self.context = ctx
        log.info("TLS certificate loaded from {path}", path=str(self.cert_path))

    def install(self, context: SSL.Context, cert_path: Path, key_path: Path) -> None:
        """Reactor: serve `context` (built by build_context from these files) to every new
        connection from now on; open connections keep the context they were made with, and
        a SIGHUP reloads these files."""
        self.cert_path, self.key_path = cert_path, key_path
        self.context = context
        log.info("TLS certificate now served from {path}", path=str(cert_path))

    def server_options(self) -> ReloadableServerOptions:
        return self._options


def _tls_connection(transport):
    """The pyOpenSSL connection behind a transport, if TLS is active."""
    for obj in (transport, getattr(transport, "transport", None)):
        if obj is None:
            continue
        conn = getattr(obj, "_tlsConnection", None)
        if conn is not None:
            return conn
    try:
        if ISSLTransport.providedBy(transport):
            return transport.getHandle()
    except Exception:
        pass
    return None


def is_secure(transport) -> bool:
    """True when the transport is TLS (implicit or after STARTTLS)."""
    return ISSLTransport.providedBy(transport) or _tls_connection(transport) is not None


def tls_info(transport) -> str | None:
    """'TLSv1.3 TLS_AES_256_GCM_SHA384' for Received headers, or None."""
    conn = _tls_connection(transport)
    if conn is None:
        return None
    try:
        version = conn.get_protocol_version_name()
        cipher = conn.get_cipher_name()
    except Exception:
        return None
    if not version or not cipher:
        return None
    return f"{version} {cipher}"


def client_options(hostname: str | None = None, verify: bool = False):
    """Client context for the relay: opportunistic TLS verifies nothing (RFC 7435), but still
    refuses TLS below 1.2."""
    if verify and hostname:
        return ssl.optionsForClientTLS(
            hostname, extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2}
        )
    return _UnverifiedClientOptions()


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientOptions:
    def __init__(self):
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self._ctx = ctx

    def clientConnectionForTLS(self, tlsProtocol):
        conn = SSL.Connection(self._ctx, None)
        conn.set_app_data(tlsProtocol)
        return conn
