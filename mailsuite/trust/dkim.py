"""Outbound DKIM (RFC 6376, RFC 8463): key files, key generation and message signing.

Keys live at ``<data_dir>/dkim/<domain>/<selector>.key`` (mode 0600) with the DNS TXT value to
publish beside it in ``<selector>.pub``.  An ed25519 key file holds the base64 32-byte seed, an
RSA key file a PKCS#1 PEM: the forms dkimpy signs with.  When a domain has both kinds, a message
gets both signatures (RFC 8463 §4: receivers that do not know ed25519 use the RSA one).

The cryptography and canonicalization are dkimpy's; this module chooses keys, headers and
canonicalization (relaxed/relaxed: survives the header re-folding common in transit).
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass
from email.utils import getaddresses
from pathlib import Path

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from twisted.logger import Logger

from mailsuite.config import Config
from mailsuite.durable.modes import make_private_dirs
from mailsuite.message.lines import header_end

KEY_TYPES = ("ed25519", "rsa")
DEFAULT_SELECTORS = {"ed25519": "ed", "rsa": "rsa"}
RSA_BITS = 2048
ALGORITHMS = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256"}

# RFC 6376 §5.4.1: the fields that carry the message's meaning to a reader.
SIGNED_HEADERS = (
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "list-unsubscribe",
    "list-unsubscribe-post",
)
_log = Logger(namespace="mailsuite.trust.dkim")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-_.]*[A-Za-z0-9])?\Z")


class DkimKeyError(Exception):
    """A key file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    key_type: str  # "ed25519" | "rsa"
    private: bytes  # what dkimpy's sign() takes for this key type
    dns_value: str  # the TXT record value: "v=DKIM1; k=...; p=..."

    @property
    def dns_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"


def dkim_dir(config: Config) -> Path:
    return config.data_dir / "dkim"


def key_paths(config: Config, domain: str, selector: str) -> tuple[Path, Path]:
    base = dkim_dir(config) / domain.lower().rstrip(".")
    return base / f"{selector}.key", base / f"{selector}.pub"


def dns_value(key_type: str, public: bytes) -> str:
    """RFC 6376 §3.6.1 key record; p= is the raw ed25519 key or RSA SubjectPublicKeyInfo."""
    return f"v=DKIM1; k={key_type}; p={base64.b64encode(public).decode('ascii')}"


def _write_private(path: Path, data: bytes) -> None:
    make_private_dirs(path.parent)  # 0700 at every level it makes, whatever the umask
    # O_EXCL: never overwrite a published key by accident; 0600 from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def generate_key(config: Config, domain: str, selector: str, key_type: str) -> DkimKey:
    """Create a key pair for `domain`/`selector`; raises FileExistsError if one exists."""
    if key_type not in KEY_TYPES:
        raise ValueError(f"key type must be one of {', '.join(KEY_TYPES)}")
    if not _SELECTOR.match(selector):
        raise ValueError(f"{selector!r} is not a valid selector")
    domain = domain.lower().rstrip(".")
    key_path, pub_path = key_paths(config, domain, selector)
    if key_type == "ed25519":
        priv = ed25519.Ed25519PrivateKey.generate()
        seed = priv.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        private = base64.b64encode(seed) + b"\n"
        public = priv.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        priv = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        private = priv.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, what dkimpy parses
            serialization.NoEncryption(),
        )
        public = priv.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    value = dns_value(key_type, public)
    _write_private(key_path, private)
    pub_path.write_text(value + "\n")
    return DkimKey(domain, selector, key_type, private.strip(), value)


def load_key(config: Config, domain: str, selector: str) -> DkimKey:
    """Read one key pair; raises DkimKeyError."""
    key_path, pub_path = key_paths(config, domain, selector)
    try:
        private = key_path.read_bytes().strip()
        value = pub_path.read_text().strip()
    except OSError as e:
        raise DkimKeyError(f"{key_path}: {e.strerror}") from None
    key_type = "rsa" if private.startswith(b"-----BEGIN") else "ed25519"
    if f"k={key_type}" not in value.replace(" ", ""):
        raise DkimKeyError(f"{pub_path} does not match the {key_type} key in {key_path}")
    return DkimKey(domain.lower().rstrip("."), selector, key_type, private, value)


def load_keys(config: Config, domain: str) -> list[DkimKey]:
    """The domain's signing keys: [trust] dkim_selectors, or every *.key in its folder."""
    domain = domain.lower().rstrip(".")
    folder = dkim_dir(config) / domain
    if not domain or "/" in domain or domain.startswith("."):
        return []
    if config.trust.dkim_selectors:
        selectors = [
            s for s in config.trust.dkim_selectors if key_paths(config, domain, s)[0].exists()
        ]
    else:
        try:
            selectors = sorted(p.stem for p in folder.glob("*.key"))
        except OSError:
            return []
    return [load_key(config, domain, s) for s in selectors]


def _header_lines(data: bytes) -> list[bytes]:
    """The header's lines (folded as they come), without the blank line that ends it."""
    return re.split(rb"\r?\n", data[: header_end(data)].rstrip(b"\r\n"))


def header_names(data: bytes) -> list[str]:
    """Lower-case names of the header fields, in order."""
    names = []
    for line in _header_lines(data):
        if line[:1] in (b" ", b"\t") or b":" not in line:
            continue
        names.append(line.split(b":", 1)[0].strip().decode("ascii", "replace").lower())
    return names


def headers_to_sign(data: bytes) -> list[bytes]:
    """Each present signed field once per occurrence, then From once more (RFC 6376 §8.15:
    signing a field more times than it occurs stops anyone adding another From: later)."""
    present = header_names(data)
    chosen = [n.encode() for n in present if n in SIGNED_HEADERS]
    return chosen + [b"from"]


def from_domain(data: bytes) -> str | None:
    """The domain of the (first) From: address, lower case."""
    for line in unfolded_headers(data):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"from":
            addrs = getaddresses([value.decode("utf-8", "replace")])
            for _name, addr in addrs:
                if "@" in addr:
                    return addr.rpartition("@")[2].strip().lower().rstrip(".") or None
            return None
    return None


def unfolded_headers(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    for line in _header_lines(data):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line
        else:
            out.append(line)
    return out


def sign_message(data: bytes, keys: list[DkimKey]) -> bytes:
    """Prepend one DKIM-Signature per key (relaxed/relaxed); pure CPU work."""
    if not keys:
        return data
    linesep = b"\r\n" if b"\r\n" in data[: data.find(b"\n") + 1 or len(data)] else b"\n"
    include = headers_to_sign(data)
    signatures = []
    for key in keys:
        signer = dkimpy.DKIM(data, linesep=linesep)
        signatures.append(
            signer.sign(
                key.selector.encode("ascii"),
                key.domain.encode("ascii"),
                key.private,
                signature_algorithm=ALGORITHMS[key.key_type],
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
        )
    return b"".join(signatures) + data


def sign(services, mail_from_domain: str, data: bytes) -> bytes:
    """Sign an outgoing message with the local domain's DKIM keys; return the new message.

    The signing domain is the From: header's domain when we hold keys for it (DMARC aligns
    DKIM with From:), else `mail_from_domain` (the envelope sender's domain, "" for bounces),
    else the message goes out unsigned, unchanged.  Blocking and CPU-bound (reads key files,
    hashes the body): the relay calls it from a thread, e.g.
    ``data = await deferToThread(trust.dkim.sign, services, domain, data)``.
    Never raises for a bad key: it logs and sends unsigned rather than holding mail back.
    """
    config: Config = services.config
    if not config.trust.dkim_sign:
        return data
    candidates = [from_domain(data), (mail_from_domain or "").lower().rstrip(".")]
    for domain in candidates:
        if not domain:
            continue
        try:
            keys = load_keys(config, domain)
        except DkimKeyError as e:
            _log.error("DKIM key for {domain} unusable: {error}", domain=domain, error=str(e))
            continue
        if not keys:
            continue
        try:
            return sign_message(data, keys)
        except dkimpy.DKIMException as e:
            _log.error("DKIM signing for {domain} failed: {error}", domain=domain, error=str(e))
            return data
    return data
