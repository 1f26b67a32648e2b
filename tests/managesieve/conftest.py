"""ManageSieve test fixtures: a real mailsuite server and two clients for it: sievelib's
(the `sievelib` package, what Python tools and several webmails use) and a raw-socket one
that sends exactly the bytes a test wants and reads responses with their literals."""

from __future__ import annotations

import base64
import itertools
import re
import socket
import ssl

import pytest
from sievelib.managesieve import Client

from tests.conftest import DEFAULT_PASSWORD, RunningServer, client_tls_context

ALICE = "alice@example.test"  # on servers a test starts itself
HOSTNAME = "mail.example.test"
# Only what these tests talk to: ManageSieve, and SMTP to deliver through a script.
LISTENERS = {k: [] for k in ("submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http")}
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
_FINAL = re.compile(rb"^(OK|NO|BYE)\b")


_accounts = itertools.count(1)


@pytest.fixture(scope="module")
def sieve_server(reactor_running, tmp_path_factory):
    """One server per test module (each server started costs file descriptors and time); each
    test logs in as accounts of its own (`alice`, `bob`), so none sees another's scripts, mail
    or failed logins.  The per-address throttle is loosened for that reason."""
    srv = RunningServer(
        tmp_path_factory.mktemp("managesieve"),
        {
            "listen": LISTENERS,
            "limits": {"bad_commands": 5},
            "auth": {"ip_free_failures": 1000, "ip_lockout_failures": 1000},
        },
    )
    yield srv
    srv.stop()


def _account(srv, name: str) -> str:
    address = f"{name}{next(_accounts)}@example.test"
    srv.add_user(address)
    return address


@pytest.fixture
def alice(sieve_server) -> str:
    return _account(sieve_server, "alice")


@pytest.fixture
def bob(sieve_server) -> str:
    return _account(sieve_server, "bob")


@pytest.fixture
def trusted_cert(sieve_server, monkeypatch):
    """sievelib verifies the server's certificate with the default context: let it trust ours
    (the context reads SSL_CERT_FILE when it is made)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(sieve_server.config.tls.cert))
    return sieve_server.config.tls.cert


def sievelib_client(srv, user: str, password: str = DEFAULT_PASSWORD, **kw) -> Client:
    """A sievelib Client logged in after STARTTLS with a verified certificate."""
    c = Client("127.0.0.1", srv.port("managesieve"), srvhostname=HOSTNAME)
    assert c.connect(user, password, starttls=True, **kw), c.errmsg
    return c


class RawSieve:
    """Bytes out, responses in: `command(b"...")` returns the lines of the response (literals
    joined into their line) and the final OK/NO/BYE line."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self.greeting = self.response()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data
        return data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        m = _LITERAL.search(line)
        if m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.line()
        return line

    def response(self) -> list[bytes]:
        """Lines up to and including the final OK, NO or BYE."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if _FINAL.match(line):
                return lines

    def command(self, data: bytes) -> list[bytes]:
        self.send(data + b"\r\n")
        return self.response()

    def final(self, data: bytes) -> bytes:
        return self.command(data)[-1]

    def starttls(self) -> list[bytes]:
        assert self.final(b"STARTTLS").startswith(b"OK")
        self.sock = client_tls_context().wrap_socket(self.sock, server_hostname=HOSTNAME)
        return self.response()

    def closed(self) -> bool:
        """The server closed the connection (after what it sent)."""
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw(sieve_server):
    clients: list[RawSieve] = []

    def connect() -> RawSieve:
        c = RawSieve(sieve_server.port("managesieve"))
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


def plain_auth(user: str, password: str = DEFAULT_PASSWORD) -> bytes:
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
    return b'AUTHENTICATE "PLAIN" "' + token + b'"'


def logged_in(raw_connect, user: str) -> RawSieve:
    c = raw_connect()
    c.starttls()
    assert c.final(plain_auth(user)).startswith(b"OK")
    return c
