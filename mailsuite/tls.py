"""One TLS setup for every listener: contexts from the configured certificate, self-signed when
missing, reloaded on SIGHUP (certbot renewals) or installed by the ACME client, for new
connections without touching open ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import ipaddress
import os
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    ISSLTransport,
)
from twisted.logger import Logger
from zope.interface import implementer

from mailsuite.config import Config, TlsConfig
from mailsuite.durable.modes import make_private_dirs

log = Logger(namespace="mailsuite.tls")

# Modern AEAD suites for TLS 1.2 (TLS 1.3 suites are fixed by OpenSSL).
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


class TlsError(Exception):
    """A certificate or key that cannot be used, said in words an operator can act on."""


def certificate_names(config: Config) -> list[str]:
    """The names a certificate for this server must hold: the host name, the public host name,
    and every listen address given as a name ("localhost"); listen addresses given as IP
    addresses are not names a client verifies a server by."""
    names = [config.hostname]
    if config.public.host and config.public.host not in names:
        names.append(config.public.host)
    for f in dataclasses.fields(config.listen):
        for address in getattr(config.listen, f.name):
            host = address.rpartition(":")[0].strip("[]")
            try:
                ipaddress.ip_address(host)
            except ValueError:
                if host not in ("", "*") and host not in names:
                    names.append(host)
    return names


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_self_signed(
    cert_path: Path, key_path: Path, hostname: str, names: Iterable[str] = ()
) -> str:
    """Write a self-signed certificate for `hostname` and `names` (key mode 0600); returns its
    SHA-256 fingerprint for the log.

    It is an end-entity certificate (CA:FALSE, serverAuth): Mozilla's clients refuse a CA
    certificate used as a server's own (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY) even
    once the user has chosen to trust it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    sans = [hostname] + [n for n in names if n != hostname]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in dict.fromkeys(sans)]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
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


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise TlsError(f"permission denied reading the {what} {path}") from None
    except FileNotFoundError:
        raise TlsError(f"the {what} {path} does not exist") from None
    except IsADirectoryError:
        raise TlsError(f"the {what} {path} is a folder, not a file") from None
    except OSError as e:
        raise TlsError(f"cannot read the {what} {path}: {e.strerror}") from None


@dataclass(frozen=True)
class CertificatePair:
    """A certificate chain and its private key, read and checked (load_certificate_pair)."""

    chain: list[x509.Certificate]
    key: typing.Any  # a cryptography private key

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def fingerprint(self) -> str:
        return fingerprint(self.leaf.public_bytes(serialization.Encoding.DER))


def load_certificate_pair(cert_path: Path, key_path: Path) -> CertificatePair:
    """Read a PEM chain and its key the one way `serve`, SIGHUP and `check` all do; TlsError
    says what is wrong: unreadable, not PEM, encrypted key, key of another certificate."""
    cert_data = _read(cert_path, "certificate")
    key_data = _read(key_path, "key")
    if b"-----BEGIN CERTIFICATE-----" not in cert_data:
        raise TlsError(f"{cert_path} is not a PEM certificate (no BEGIN CERTIFICATE block)")
    try:
        chain = x509.load_pem_x509_certificates(cert_data)
    except ValueError as e:
        raise TlsError(f"{cert_path} is not a PEM certificate: {e}") from None
    if b"-----BEGIN" not in key_data or b"PRIVATE KEY-----" not in key_data:
        raise TlsError(f"{key_path} is not a PEM private key (no BEGIN PRIVATE KEY block)")
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
    except TypeError:
        raise TlsError(
            f"{key_path} is encrypted with a passphrase; mailsuite needs it without"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TlsError(f"{key_path} is not a PEM private key: {e}") from None
    public = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*public) != key.public_key().public_bytes(*public):
        raise TlsError(f"the key {key_path} does not match the certificate {cert_path}")
    return CertificatePair(chain, key)


def build_context(pair: CertificatePair, tls_config: TlsConfig) -> SSL.Context:
    """The server context every TLS listener and STARTTLS uses, from a checked pair."""
    ctx = SSL.Context(SSL.TLS_METHOD)
    minimum = SSL.TLS1_3_VERSION if tls_config.min_version == "1.3" else SSL.TLS1_2_VERSION
    ctx.set_min_proto_version(minimum)
    options = SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
    if not tls_config.session_tickets:
        options |= SSL.OP_NO_TICKET
    ctx.set_options(options)
    ctx.set_cipher_list(CIPHERS.encode())
    try:
        ctx.use_certificate(pair.leaf)
        for extra in pair.chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(pair.key)
        ctx.check_privatekey()
    except (SSL.Error, TypeError, ValueError) as e:
        raise TlsError(f"OpenSSL refused the certificate or key: {e}") from None
    ctx.set_session_id(b"mailsuite")
    return ctx


@dataclass(frozen=True)
class CertificateStatus:
    """What `check` and the start-up summary say about the certificate."""

    cert_path: Path
    key_path: Path
    # "loaded" (files present and usable) or "to be made" (a self-signed pair made at start).
    state: str
    fingerprint: str = ""
    self_signed: bool = False
    not_after: datetime.datetime | None = None


def certificate_status(config: Config) -> CertificateStatus:
    """Check the configured certificate as `serve` would load it, without making anything;
    TlsError when `serve` would refuse to start."""
    tls_config = config.tls
    cert, key = tls_config.cert, tls_config.key
    if not cert.exists() and not key.exists() and tls_config.self_signed:
        return CertificateStatus(cert, key, "to be made", self_signed=True)
    if cert.exists() != key.exists() and tls_config.self_signed:
        raise TlsError(f"only one of {cert} and {key} exists")
    pair = load_certificate_pair(cert, key)
    build_context(pair, tls_config)
    leaf = pair.leaf
    return CertificateStatus(
        cert,
        key,
        "loaded",
        fingerprint=pair.fingerprint(),
        self_signed=leaf.issuer == leaf.subject,
        not_after=leaf.not_valid_after_utc,
    )


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
    files, and `self_signed` says whether a missing pair may be made (default: `[tls]
    self_signed`). With `alpn_responder`, a client offering only the ALPN protocol
    "acme-tls/1" is answered with the validation certificate the responder returns
    (RFC 8737 §3)."""

    def __init__(
        self,
        config: Config,
        cert_path: Path | None = None,
        key_path: Path | None = None,
        alpn_responder: AlpnResponder | None = None,
        self_signed: bool | None = None,
    ):
        self.config = config
        self.cert_path = cert_path or config.tls.cert
        self.key_path = key_path or config.tls.key
        self.alpn_responder = alpn_responder
        self.self_signed = config.tls.self_signed if self_signed is None else self_signed
        self.context: SSL.Context | None = None
        self.made_fingerprint = ""  # set when this start made a self-signed certificate
        self.fingerprint = ""
        self.ensure_certificate()
        self.reload()
        self._options = ReloadableServerOptions(self)

    def ensure_certificate(self) -> None:
        """Make a self-signed pair when both files are missing and `[tls] self_signed` allows
        it (the default paths); a configured path that does not exist is an error, never
        silently replaced (a typo in a Let's Encrypt path must not go unnoticed)."""
        if self.cert_path.exists() and self.key_path.exists():
            return
        if not self.self_signed:
            missing = self.cert_path if not self.cert_path.exists() else self.key_path
            what = "certificate" if missing == self.cert_path else "key"
            raise TlsError(
                f"the {what} {missing} does not exist (set `[tls] self_signed = true` to make "
                "a self-signed certificate there)"
            )
        if self.cert_path.exists() != self.key_path.exists():
            raise TlsError(f"only one of {self.cert_path} and {self.key_path} exists")
        names = certificate_names(self.config)
        fp = make_self_signed(self.cert_path, self.key_path, self.config.hostname, names)
        self.made_fingerprint = fp
        log.info(
            "made a self-signed certificate for {host} in {path}, SHA-256 fingerprint {fp}",
            host=", ".join(names),
            path=str(self.cert_path),
            fp=fp,
        )

    def build_context(self, cert_path: Path, key_path: Path) -> SSL.Context:
        """A server context for the pair of files (blocking: it reads them); TlsError when they
        cannot be used."""
        return self._context_for(load_certificate_pair(cert_path, key_path))

    def _context_for(self, pair: CertificatePair) -> SSL.Context:
        ctx = build_context(pair, self.config.tls)
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
            pair = load_certificate_pair(self.cert_path, self.key_path)
            ctx = self._context_for(pair)
        except TlsError as e:
            if self.context is None:
                raise
            log.error("certificate reload failed, keeping the old one: {err}", err=str(e))
            return
        self.context = ctx
        self.fingerprint = pair.fingerprint()
        log.info("TLS certificate loaded from {path}", path=str(self.cert_path))

    def install(self, context: SSL.Context, cert_path: Path, key_path: Path) -> None:
        """Reactor: serve `context` (built by build_context from these files) to every new
        connection from now on; open connections keep the context they were made with, and
        a SIGHUP reloads these files."""
        self.cert_path, self.key_path = cert_path, key_path
        self.context = context
        leaf = SSL.Connection(context, None).get_certificate()
        if leaf is not None:
            der = leaf.to_cryptography().public_bytes(serialization.Encoding.DER)
            self.fingerprint = fingerprint(der)
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
