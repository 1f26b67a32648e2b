"""IMAP test fixtures: a real mailsuite server on loopback ports and logged-in clients.

Most tests log in over plain TCP on 127.0.0.1 (`auth.plaintext = "loopback"`) to stay fast;
the TLS paths (993, STARTTLS) have their own tests with TLS required.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD

USER = "alice@example.test"


# Only the IMAP listeners: starting the others costs time every test pays.
IMAP_ONLY = {
    k: [] for k in ("smtp", "submission", "submissions", "pop3", "pop3s", "http", "managesieve")
}


@pytest.fixture
def imap_server(server_factory):
    srv = server_factory(
        auth={"plaintext": "loopback"}, limits={"bad_commands": 5}, listen=IMAP_ONLY
    )
    srv.add_user(USER)
    return srv


@pytest.fixture
def full_server(server_factory):
    """Every listener (SMTP for delivery into IDLE, POP3 next to IMAP)."""
    srv = server_factory(auth={"plaintext": "loopback"}, limits={"bad_commands": 5})
    srv.add_user(USER)
    return srv


@pytest.fixture
def imap(imap_server):
    """A logged-in imaplib client on the plain port."""
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    yield c
    try:
        c.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def connect(srv, user: str = USER) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    c.login(user, DEFAULT_PASSWORD)
    return c


def message(
    i: int = 1, subject: str | None = None, body: str = "Hello there.\r\n", extra=""
) -> bytes:
    subject = subject or f"Test message {i}"
    return (
        f"From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\n"
        f"Subject: {subject}\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        f"Message-ID: <{i}.{time.time()}@example.test>\r\n{extra}\r\n{body}"
    ).encode()


def append_n(c: imaplib.IMAP4, n: int, folder: str = "INBOX") -> None:
    for i in range(1, n + 1):
        typ, _ = c.append(folder, None, None, message(i))
        assert typ == "OK"


class Raw:
    """A raw line-oriented IMAP connection for exact wire checks."""

    def __init__(self, port: int, tls: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.sock = ctx.wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until_tagged(self, tag: bytes) -> list[bytes]:
        out = []
        while True:
            line = self.line()
            out.append(line)
            if line.startswith(tag + b" "):
                return out

    def cmd(self, text: bytes, tag: bytes = b"t") -> list[bytes]:
        self.send(tag + b" " + text + b"\r\n")
        return self.until_tagged(tag)

    def login(self, user: str = USER) -> None:
        out = self.cmd(f'LOGIN {user} "{DEFAULT_PASSWORD}"'.encode(), b"L")
        assert out[-1].startswith(b"L OK"), out

    def close(self) -> None:
        self.sock.close()


def answered_in_turns(r: Raw, other: Raw, command: bytes) -> list[bytes]:
    """Send `command` on `r` and a NOOP on `other` together, before the server reads either;
    assert the NOOP is answered while the command has not yet finished (the command works in
    reactor turns, another connection served between them), and return the command's lines."""
    r.send(b"l " + command + b"\r\n")
    other.send(b"n NOOP\r\n")
    assert other.until_tagged(b"n")[-1] == b"n OK NOOP completed"
    r.sock.setblocking(False)
    early = r.buf
    try:
        while chunk := r.sock.recv(1 << 20):
            early += chunk
    except BlockingIOError:
        pass
    assert b"\r\nl OK" not in early
    r.sock.setblocking(True)
    lines = r.until_tagged(b"l")
    assert lines[-1] == b"l OK LIST completed"
    return lines


def selected(srv) -> Raw:
    """A raw session, logged in, with INBOX selected."""
    r = Raw(srv.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    return r
