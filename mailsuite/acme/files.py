"""What the ACME client keeps under `data_dir/acme/` (folder 0700, files 0600): the account key
and URL, the certificate chain and its key, the temporary self-signed pair served until the
first certificate arrives, the state of the last attempt, and the files through which
`mailsuite cert renew` talks to the running server.

Every function here is blocking: the ACME thread and the admin command call them, never the
reactor.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from mailsuite.durable import replace_file
from mailsuite.durable.modes import make_private_dirs


@dataclass
class AcmeState:
    """The last attempt, as `cert status` shows it and the scheduler resumes from it."""

    attempts: int = 0  # attempts so far: `cert renew` waits for this to move
    last_attempt: float = 0.0  # seconds since the epoch; 0: never
    last_error: str = ""  # "" when the last attempt succeeded
    failures: int = 0  # failed attempts in a row (the back-off's exponent)
    last_success: float = 0.0
    next_attempt: float = 0.0  # when the server means to try again after a failure
    hosts: list[str] = field(default_factory=list)  # names asked for in the last attempt

    @classmethod
    def from_json(cls, data: dict) -> AcmeState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class CertificateInfo:
    names: list[str]
    issuer: str
    not_before: float
    not_after: float


class AcmeFiles:
    """The paths of `data_dir/acme/` and the blocking reads and writes of what they hold."""

    def __init__(self, data_dir: Path):
        self.folder = data_dir / "acme"
        self.account_key = self.folder / "account.key"
        self.account = self.folder / "account.json"
        self.cert = self.folder / "cert.pem"  # the chain, leaf first
        self.key = self.folder / "cert.key"
        self.temporary_cert = self.folder / "temporary.pem"
        self.temporary_key = self.folder / "temporary.key"
        self.state_file = self.folder / "state.json"
        self.renew_request = self.folder / "renew.request"
        self.lock = self.folder / "server.lock"

    def make_folder(self) -> None:
        make_private_dirs(self.folder)

    def has_certificate(self) -> bool:
        return self.cert.is_file() and self.key.is_file()

    # -- writing --------------------------------------------------------------------------------

    def write(self, path: Path, data: bytes) -> None:
        """Replace `path` whole (0600), so a reader sees the old file or the new one."""
        self.make_folder()
        replace_file(path, data)

    def save_certificate(self, chain_pem: bytes, key_pem: bytes) -> None:
        """The key first, then the chain: the pair on disk is only new once both are."""
        self.write(self.key, key_pem)
        self.write(self.cert, chain_pem)

    # -- the account -----------------------------------------------------------------------------

    def load_or_make_account_key(self) -> PrivateKeyTypes:
        """The account key (EC P-256, made on first use): one account for the server's life."""
        try:
            return serialization.load_pem_private_key(self.account_key.read_bytes(), None)
        except FileNotFoundError:
            pass
        key = ec.generate_private_key(ec.SECP256R1())
        self.write(self.account_key, private_pem(key))
        return key

    def account_url(self, directory: str) -> str | None:
        """The account's URL at `directory`, None when not registered there yet."""
        try:
            data = json.loads(self.account.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.get("directory") != directory:
            return None
        return data.get("url") or None

    def save_account_url(self, directory: str, url: str) -> None:
        self.write(self.account, json.dumps({"directory": directory, "url": url}).encode())

    # -- state ------------------------------------------------------------------------------

    def load_state(self) -> AcmeState:
        try:
            return AcmeState.from_json(json.loads(self.state_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return AcmeState()

    def save_state(self, state: AcmeState) -> None:
        self.write(self.state_file, json.dumps(asdict(state), indent=1).encode())

    def certificate_info(self) -> CertificateInfo | None:
        """The served ACME certificate's names, issuer and validity; None when there is none
        (or it cannot be read)."""
        try:
            return certificate_info(x509.load_pem_x509_certificate(self.cert.read_bytes()))
        except (FileNotFoundError, ValueError):
            return None

    # -- talking to the running server --------------------------------------------------------

    def hold_server_lock(self) -> int:
        """Taken by the server for its whole life, so that `cert renew` knows one is running;
        returns the descriptor to keep open. BlockingIOError when another server holds it."""
        self.make_folder()
        fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def server_running(self) -> bool:
        """Whether a server holds the lock (the admin command's question)."""
        try:
            fd = os.open(self.lock, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def request_renewal(self) -> None:
        self.write(self.renew_request, b"renew\n")

    def take_renewal_request(self) -> bool:
        """True once per `cert renew`: the request file is removed as it is taken."""
        try:
            self.renew_request.unlink()
        except FileNotFoundError:
            return False
        return True


def private_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def certificate_info(cert: x509.Certificate) -> CertificateInfo:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    return CertificateInfo(
        names=list(names),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def utc_text(when: float) -> str:
    """'2026-12-05 22:44:26 UTC' for the admin command and the log."""
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S UTC")
