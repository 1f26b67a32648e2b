"""Real SMTP listeners on free loopback ports, served by a reactor running in a thread.

`smtp_server(**config_overrides)` builds a fresh data folder and Services, starts the three
SMTP listeners on port 0 and returns a handle with the ports, the services and helpers to read
the recipient's Maildir.  Settings under test (tiny limits and timeouts) go through the config,
exactly as an operator would set them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from twisted.internet import reactor

from mailsuite.app import build_factory
from mailsuite.config import config_from_dict
from mailsuite.services import Services
from tests.conftest import ensure_reactor, on_reactor

PASSWORD = "s3cret-pw"


@dataclasses.dataclass
class SmtpServer:
    services: Services
    ports: dict[str, int]
    root: Path

    def maildir_files(self, address: str) -> list[Path]:
        local, _, domain = address.partition("@")
        base = self.root / "data" / "mail" / domain / local
        return sorted(p for sub in ("new", "cur") for p in (base / sub).glob("*") if p.is_file())

    def message(self, address: str) -> bytes:
        files = self.maildir_files(address)
        assert len(files) == 1, files
        return files[0].read_bytes()

    def queue_entries(self) -> list[Path]:
        return sorted((self.root / "data" / "queue" / "entries").iterdir())


def _base_config(data_dir: Path, cert_dir: Path, base: Path, sections: dict):
    raw = {
        "hostname": "mx.example.test",
        "domains": ["example.test", "other.test"],
        "data_dir": str(data_dir),
        "tls": {"cert": str(cert_dir / "mail.pem"), "key": str(cert_dir / "mail.key")},
        "auth": {"plaintext": "never"},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return config_from_dict(raw, base=base)


@pytest.fixture(scope="session")
def template_dir(tmp_path_factory) -> Path:
    """Accounts and Maildirs made once (argon2 hashing is slow on purpose), copied per test."""
    root = tmp_path_factory.mktemp("smtp-template")
    config = _base_config(root / "data", root / "certs", root, {})
    services = Services.create(config)
    acc = services.accounts
    for user in ("alice@example.test", "bob@example.test", "carol@other.test"):
        acc.add_user(user, PASSWORD)
        services.store.create_mailbox(user)
    acc.add_alias("sales@example.test", ["alice@example.test", "bob@example.test"])
    acc.add_alias("ali@example.test", ["alice@example.test"])
    acc.add_alias("@other.test", ["carol@other.test"])  # catch-all
    services.tls.ensure_certificate()
    return root


@pytest.fixture
def smtp_server(tmp_path, template_dir):
    ensure_reactor()
    listening = []

    def make(**sections) -> SmtpServer:
        shutil.copytree(template_dir / "data", tmp_path / "data")
        config = _base_config(tmp_path / "data", template_dir / "certs", tmp_path, sections)
        services = Services.create(config)
        ports = {}
        for kind in ("smtp", "submission", "submissions"):
            factory = build_factory(services, kind)
            port = on_reactor(reactor.listenTCP, 0, factory, interface="127.0.0.1")
            listening.append(port)
            ports[kind] = port.getHost().port
        return SmtpServer(services, ports, tmp_path)

    yield make
    for port in listening:
        on_reactor(port.stopListening)


@pytest.fixture
def server(smtp_server) -> SmtpServer:
    return smtp_server()


class Wire:
    """A raw SMTP client socket: send exact bytes, read whole replies (RFC 5321 §4.2.1)."""

    def __init__(self, port: int, tls: bool = False, greeting: bool = True, timeout: float = 30):
        import socket

        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sock = self.context().wrap_socket(sock)
        self.sock = sock
        self.buf = b""
        if greeting:
            code, _ = self.reply()
            assert code == 220

    @staticmethod
    def context():
        import ssl

        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.line().decode("utf-8", "replace")
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), lines

    def replies(self, n: int) -> list[tuple[int, str]]:
        return [(c, " ".join(t)) for c, t in (self.reply() for _ in range(n))]

    def send_while_reading(self, data: bytes, n: int, seconds: float = 60) -> list[tuple[int, str]]:
        """Write `data` and read `n` replies at the same time, in one thread: an SSL socket
        must not be read and written from two threads at once (OpenSSL state is not
        thread-safe), and the server may stop reading until its replies are read."""
        import select
        import ssl
        import time

        out = memoryview(data)
        self.sock.setblocking(False)
        deadline = time.monotonic() + seconds
        crlf = b"\r\n"
        # poll, not select: the suite's process may hold more than FD_SETSIZE descriptors.
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        try:
            while self.buf.count(crlf) < n or out:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(out)} bytes unsent, {self.buf.count(crlf)} lines read"
                    )
                pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
                poller.modify(self.sock, select.POLLIN | (select.POLLOUT if out else 0))
                events = poller.poll(1000)
                readable = any(
                    e & (select.POLLIN | select.POLLHUP | select.POLLERR) for _, e in events
                )
                writable = any(e & select.POLLOUT for _, e in events)
                if readable or pending:
                    try:
                        chunk = self.sock.recv(65536)
                        if not chunk:
                            raise EOFError(self.buf)
                        self.buf += chunk
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
                if writable and out:
                    try:
                        out = out[self.sock.send(out[:65536]) :]
                    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                        pass
        finally:
            self.sock.setblocking(True)
        return self.replies(n)

    def cmd(self, text: str) -> tuple[int, str]:
        self.send(text + "\r\n")
        code, lines = self.reply()
        return code, " ".join(lines)

    def starttls(self) -> None:
        assert self.cmd("STARTTLS")[0] == 220
        self.sock = self.context().wrap_socket(self.sock)

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF)."""
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(server):
    opened = []

    def connect(kind: str = "smtp", **kw) -> Wire:
        w = Wire(server.ports[kind], **kw)
        opened.append(w)
        return w

    yield connect
    for w in opened:
        w.close()
