"""Driving the IMAP session state machine without a socket or a running reactor: real
Services on a temporary data_dir, and an in-memory `Connection` in place of the Twisted
adapter (the bytes the session writes are kept in a list)."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer

from mailsuite.config import config_from_dict
from mailsuite.imap.server_state import ImapState
from mailsuite.imap.session import Session
from mailsuite.services import Services
from tests.conftest import base_config

USER = "alice@example.test"


class MemoryConnection:
    """Carries a session's bytes into a list; the one stand-in the state machine was built for
    (the Twisted adapter is `mailsuite.imap.server.ImapProtocol`)."""

    def __init__(self, secure: bool = False):
        self.secure = secure
        self.closed = False
        self.written: list[bytes] = []
        self.session: Session | None = None
        self._repumping = False

    def is_secure(self) -> bool:
        return self.secure

    def write_sequence(self, chunks: list[bytes]) -> None:
        self.written.extend(chunks)

    def wait_writable(self) -> defer.Deferred:
        return defer.succeed(None)

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def start_tls(self) -> None:
        # As the adapter does: what was pipelined after STARTTLS is dropped, then TLS is up.
        self.session.reader.clear()
        self.secure = True

    def start_compression(self) -> None:
        raise AssertionError("COMPRESS is not driven through this connection")

    def quick_ack(self) -> None:
        pass

    def processed(self) -> None:
        # As the adapter does on its next reactor turns: go on while the session yielded.
        if self.session is None or self._repumping:
            return
        self._repumping = True
        try:
            while self.session.yielded and not self.closed:
                self.session.pump()
        finally:
            self._repumping = False

    def take(self) -> list[bytes]:
        """The lines written since the last call, CRLF removed."""
        data = b"".join(self.written)
        self.written = []
        return [line for line in data.split(b"\r\n") if line]


def make_services(root: Path, with_tls: bool = True, **overrides) -> Services:
    """Real Services (store, accounts, TLS) on `root`, with one user and their mailbox."""
    raw = base_config(root, **overrides)
    config = config_from_dict(raw, base=root, path=root / "mailsuite.toml")
    services = Services.create(config, with_tls=with_tls)
    # INBOX loaded as the durable pool loads a folder before its first SELECT (no reactor
    # runs here to hand the result back): SELECT INBOX is then answered at once.
    services.store.create_mailbox(USER).folder("INBOX")
    # Folders listed in the session's own thread, for the same reason.
    services.imap = ImapState()
    return services


def open_session(
    services: Services,
    state: ImapState | None = None,
    client_ip: str = "192.0.2.10",
    secure: bool = False,
) -> tuple[Session, MemoryConnection]:
    conn = MemoryConnection(secure=secure)
    session = Session(services, state or services.imap, conn, "imap", client_ip)
    conn.session = session
    return session, conn
