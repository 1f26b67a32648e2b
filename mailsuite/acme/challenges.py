"""The answers to the CA's pending challenges, where the listeners find them.

The ACME thread posts an answer before it tells the CA to validate and withdraws it when the
authorization is settled; the web listener (http-01) and the TLS listeners (tls-alpn-01) read
them on the reactor. A lock keeps the two threads apart; nothing here does I/O.
"""

from __future__ import annotations

import datetime
import hashlib
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID, ObjectIdentifier

# RFC 8555 §8.3: the path the CA fetches an http-01 answer from.
HTTP_CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
# RFC 8737 §3: id-pe-acmeIdentifier, the validation certificate's critical extension.
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


class ChallengeBoard:
    """Pending answers: http-01 tokens and tls-alpn-01 validation certificates."""

    def __init__(self):
        self._lock = threading.Lock()
        self._http: dict[str, str] = {}
        self._alpn: dict[str, tuple[x509.Certificate, PrivateKeyTypes]] = {}

    # -- the ACME thread --------------------------------------------------------------------

    def post_http(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._http[token] = key_authorization

    def post_alpn(self, name: str, key_authorization: str) -> None:
        pair = alpn_validation_certificate(name, key_authorization)
        with self._lock:
            self._alpn[name.lower()] = pair

    def withdraw(self, token: str | None = None, name: str | None = None) -> None:
        with self._lock:
            if token is not None:
                self._http.pop(token, None)
            if name is not None:
                self._alpn.pop(name.lower(), None)

    def clear(self) -> None:
        with self._lock:
            self._http.clear()
            self._alpn.clear()

    # -- the listeners ----------------------------------------------------------------------

    def http_answer(self, path: str) -> str | None:
        """The key authorization for a request path under HTTP_CHALLENGE_PREFIX, or None."""
        if not path.startswith(HTTP_CHALLENGE_PREFIX):
            return None
        token = path[len(HTTP_CHALLENGE_PREFIX) :]
        with self._lock:
            return self._http.get(token)

    def alpn_certificate(self, name: str) -> tuple[x509.Certificate, PrivateKeyTypes] | None:
        with self._lock:
            return self._alpn.get(name.lower())


def alpn_validation_certificate(
    name: str, key_authorization: str
) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """RFC 8737 §3: a self-signed certificate for `name` alone carrying, in a critical
    acmeIdentifier extension, the SHA-256 digest of the key authorization as an ASN.1 OCTET
    STRING."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    octet_string = bytes([0x04, len(digest)]) + digest  # DER: tag 4, length 32, the digest
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, octet_string), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key
