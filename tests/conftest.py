"""Shared fixtures: a real mailsuite server on 127.0.0.1 with free ports, in a reactor thread.

Tests talk to it with real clients (smtplib, poplib, imaplib, imapclient, swaks, ...) over real
sockets and TLS; the server's own objects (store, accounts) are reachable for set-up and checks.
Anything that touches the server's in-memory state from a test goes through `server.call`, which
runs it on the reactor thread.
"""

from __future__ import annotations

import os
import re
import selectors
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from twisted.internet import reactor, threads
from twisted.logger import formatEvent, globalLogPublisher

from mailsuite.app import MailServer
from mailsuite.config import config_from_dict
from mailsuite.services import Services

REPO = Path(__file__).resolve().parent.parent
LISTEN_KINDS = (
    "smtp",
    "submission",
    "submissions",
    "pop3",
    "pop3s",
    "imap",
    "imaps",
    "http",
    "managesieve",
)
DEFAULT_PASSWORD = "secret-Passw0rd"

_reactor_thread: threading.Thread | None = None


def ensure_reactor() -> None:
    """Start the one reactor of the test process in a daemon thread (idempotent)."""
    global _reactor_thread
    if _reactor_thread is None and not reactor.running:
        _reactor_thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True, name="reactor"
        )
        _reactor_thread.start()


def on_reactor(fn, *args, **kwargs):
    """Run fn on the reactor thread and wait for its result (Deferreds included)."""
    return threads.blockingCallFromThread(reactor, fn, *args, **kwargs)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def toml_dumps(data: dict, prefix: str = "") -> str:
    """A small TOML writer for the config shapes we use (tables, strings, numbers, lists)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (str, Path)):
            s = str(v).replace("\\", "\\\\").replace('"', '\\"')
            return f'"{s}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):  # an inline table (inside a list)
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))

    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        name = f"{prefix}.{k}" if prefix else k
        key = f'"{k}"' if any(c in k for c in ".@ ") else k
        name = f"{prefix}.{key}" if prefix else key
        out += f"\n[{name}]\n" + toml_dumps(v, name)
    return out


def base_config(root: Path, **overrides) -> dict:
    data = {
        "hostname": "mail.example.test",
        "domains": ["example.test"],
        "data_dir": str(root / "data"),
        # The suite runs as root in containers: `mailsuite serve` refuses that without it.
        "allow_root": True,
        "tls": {
            "cert": str(root / "certs" / "mail.pem"),
            "key": str(root / "certs" / "mail.key"),
            # A configured path is never made up unless asked for.
            "self_signed": True,
        },
        "listen": {kind: ["127.0.0.1:0"] for kind in LISTEN_KINDS},
        "auth": {"plaintext": "never"},
    }
    return _merge(data, overrides)


class RunningServer:
    """A started MailServer; ports are the real bound ones."""

    def __init__(self, root: Path, overrides: dict):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.raw_config = base_config(root, **overrides)
        self.config_path = root / "mailsuite.toml"
        self.config_path.write_text(toml_dumps(self.raw_config))
        self.config = config_from_dict(self.raw_config, base=root, path=self.config_path)
        self.services = Services.create(self.config)
        self.server = MailServer(self.services)
        on_reactor(self.server.startService)
        self.running = True

    def port(self, kind: str) -> int:
        return self.server.port(kind)

    def call(self, fn, *args, **kwargs):
        return on_reactor(fn, *args, **kwargs)

    def add_user(
        self, address: str, password: str = DEFAULT_PASSWORD, quota_bytes=0, quota_messages=0
    ):
        self.services.accounts.add_user(address, password, quota_bytes, quota_messages)
        self.call(self.services.store.create_mailbox, address, quota_bytes, quota_messages)
        return address

    def mailbox(self, address: str):
        return self.call(self.services.store.mailbox, address)

    def message_files(self, address: str, folder: str = "INBOX") -> list[Path]:
        """Files of a folder read straight from disk, oldest first (by delivery name)."""
        path = self.services.store.path_for(address)
        if folder != "INBOX":
            from mailsuite.store.names import to_dirname

            path = path / to_dirname(folder)
        files = [p for sub in ("new", "cur") for p in (path / sub).glob("*") if p.is_file()]
        return sorted(files, key=_delivery_order)

    def messages(self, address: str, folder: str = "INBOX") -> list[bytes]:
        return [p.read_bytes() for p in self.message_files(address, folder)]

    def cli(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
        return run_cli("--config", str(self.config_path), *args, input=input)

    def stop(self) -> None:
        if self.running:
            self.running = False
            on_reactor(self.server.stopService)


def _delivery_order(path: Path) -> tuple:
    """A Maildir name's delivery order: seconds, then microseconds and this process's counter
    as numbers (as text, "M99999" sorted after "M123456" of the same second)."""
    m = re.match(r"(\d+)\.M(\d+)P\d+Q(\d+)", path.name)
    if m is None:
        return (int(path.name.split(".")[0]), 0, 0, path.name)
    return (int(m[1]), int(m[2]), int(m[3]), path.name)


def run_cli(
    *args: str, input: bytes | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The real admin command, in a subprocess."""
    full_env = dict(os.environ)
    full_env.pop("MAILSUITE_CONFIG", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "mailsuite.cli", *args],
        input=input,
        capture_output=True,
        env=full_env,
        timeout=60,
    )


def ready(sock, writing: bool, timeout: float) -> tuple[bool, bool]:
    """(readable, writable) of a socket within `timeout`: select() cannot watch a descriptor
    numbered 1024 or more, which a long test run reaches, so this uses the selectors module."""
    events = selectors.EVENT_READ | (selectors.EVENT_WRITE if writing else 0)
    with selectors.DefaultSelector() as sel:
        sel.register(sock, events)
        got = 0
        for _, mask in sel.select(timeout):
            got |= mask
    return bool(got & selectors.EVENT_READ), bool(got & selectors.EVENT_WRITE)


def client_tls_context() -> ssl.SSLContext:
    """Clients trust our self-signed test certificate without verification."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture(scope="session")
def reactor_running():
    ensure_reactor()
    return reactor


@pytest.fixture
def server_factory(reactor_running, tmp_path):
    """server_factory(**config_overrides) -> RunningServer; all are stopped after the test."""
    started: list[RunningServer] = []

    def make(name: str = "server", **overrides) -> RunningServer:
        srv = RunningServer(tmp_path / f"{name}{len(started)}", overrides)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def mail_server(server_factory) -> RunningServer:
    """A running server with one user, alice@example.test (password DEFAULT_PASSWORD)."""
    srv = server_factory()
    srv.add_user("alice@example.test")
    return srv


@pytest.fixture
def tls_context() -> ssl.SSLContext:
    return client_tls_context()


class LogCapture:
    """Every log event emitted while a test runs (the `logs` fixture)."""

    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines() if text in line]


@pytest.fixture
def logs():
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)
