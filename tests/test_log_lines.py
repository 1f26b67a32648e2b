"""The log file as its readers see it: a real `mailsuite serve` process writing its text log to a
file, clients sending user names with line breaks and other control characters on every
protocol, and the shipped fail2ban filter read against the lines the server wrote.

No client can start a line of its own in the log, and fail2ban's failregex finds every failed
login with the client's real address and never an address a client wrote into its user name."""

from __future__ import annotations

import base64
import configparser
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailsuite.logtext import token, visible
from tests.conftest import REPO, base_config, toml_dumps

LISTENING = re.compile(r"listening for (\w+) on 127\.0\.0\.1:(\d+)")
# What a forger would want a line to say: a failed login that bans someone else's address.
FORGED = "info mailsuite.auth: imap login failed for root from 198.51.100.66"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4} ")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("logged")
    log_file = root / "mailsuite.log"
    raw = base_config(
        root,
        auth={"plaintext": "loopback", "free_failures": 100, "ip_free_failures": 100},
        log={"file": str(log_file)},
    )
    config_path = root / "mailsuite.toml"
    config_path.write_text(toml_dumps(raw))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(config_path), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    wanted = {"submission", "pop3", "imap", "managesieve"}
    while not wanted <= ports.keys() and time.monotonic() < deadline:
        if log_file.exists():
            ports = {m[0]: int(m[1]) for m in LISTENING.findall(log_file.read_text())}
        time.sleep(0.1)
    assert wanted <= ports.keys(), log_file.read_text() if log_file.exists() else "no log file"
    yield ports, log_file
    proc.terminate()
    proc.wait(timeout=30)


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


class Lines:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def smtp_auth_plain(port: int, user: str) -> None:
    c = Lines(port)
    assert c.line().startswith(b"220")
    c.send(b"EHLO client.example\r\n")
    while not c.line().startswith(b"250 "):
        pass
    c.send(b"AUTH PLAIN " + b64(f"\0{user}\0wrong") + b"\r\n")
    assert c.line().startswith(b"535")
    c.close()


def smtp_auth_login(port: int, user: str) -> None:
    c = Lines(port)
    c.line()
    c.send(b"EHLO client.example\r\n")
    while not c.line().startswith(b"250 "):
        pass
    c.send(b"AUTH LOGIN\r\n")
    assert c.line().startswith(b"334")
    c.send(b64(user) + b"\r\n")
    assert c.line().startswith(b"334")
    c.send(b64("wrong") + b"\r\n")
    assert c.line().startswith(b"535")
    c.close()


def imap_login_literal(port: int, user: str) -> None:
    c = Lines(port)
    c.line()
    raw = user.encode()
    c.send(b"a LOGIN {%d}\r\n" % len(raw))
    assert c.line().startswith(b"+")
    c.send(raw + b' "wrong"\r\n')
    assert c.line().startswith(b"a NO")
    c.close()


def imap_authenticate(port: int, user: str) -> None:
    c = Lines(port)
    c.line()
    c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert c.line().startswith(b"+")
    c.send(b64(f"\0{user}\0wrong") + b"\r\n")
    assert c.line().startswith(b"a NO")
    c.close()


def pop3_auth_plain(port: int, user: str) -> None:
    c = Lines(port)
    c.line()
    c.send(b"AUTH PLAIN " + b64(f"\0{user}\0wrong") + b"\r\n")
    assert c.line().startswith(b"-ERR")
    c.close()


def pop3_user_pass(port: int, user: str) -> None:
    c = Lines(port)
    c.line()
    c.send(f"USER {user}\r\nPASS wrong\r\n".encode())
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"-ERR")
    c.close()


def managesieve_authenticate(port: int, user: str) -> None:
    c = Lines(port)
    while not c.line().startswith(b"OK"):  # the capability greeting
        pass
    c.send(b'AUTHENTICATE "PLAIN" "' + b64(f"\0{user}\0wrong") + b'"\r\n')
    assert c.line().startswith(b"NO")
    c.close()


ATTEMPTS = [
    ("submission", smtp_auth_plain, "smtp", "\n"),
    ("submission", smtp_auth_login, "smtp", "\r\n"),
    ("imap", imap_login_literal, "imap", "\n"),
    ("imap", imap_authenticate, "imap", "\u2028"),
    ("managesieve", managesieve_authenticate, "managesieve", "\r\n"),
    ("pop3", pop3_auth_plain, "pop3", "\n"),
    # A POP3 command line ends at LF: its user name carries the other line breaks there are.
    ("pop3", pop3_user_pass, "pop3", "\x0b\x1c\x85\r"),
]


def log_lines(log_file: Path, must_contain: str, timeout: float = 10) -> list[str]:
    """The log's lines (split as any reader could: on every line boundary Python knows),
    once `must_contain` has been written."""
    deadline = time.monotonic() + timeout
    while True:
        text = log_file.read_text(encoding="utf-8", errors="surrogateescape")
        if must_contain in text or time.monotonic() > deadline:
            return text.splitlines()
        time.sleep(0.05)


@pytest.mark.parametrize("kind, attempt, protocol, breaks", ATTEMPTS)
def test_a_user_name_with_line_breaks_never_forges_a_log_line(
    server, kind, attempt, protocol, breaks
):
    ports, log_file = server
    user = f"{attempt.__name__}{breaks}{FORGED}"
    attempt(ports[kind], user)
    written = f"{protocol} login failed for {token(user)} from 127.0.0.1"
    lines = log_lines(log_file, written)
    assert any(line.endswith(written) for line in lines), "\n".join(lines[-5:])
    assert not any(STAMP.sub("", line).startswith(FORGED) for line in lines)
    assert not any(line.startswith(FORGED) for line in lines)


def failregex() -> re.Pattern:
    """The shipped filter's failregex, with fail2ban's <HOST> as a named group."""
    parser = configparser.RawConfigParser()
    parser.read(REPO / "conf" / "fail2ban" / "filter.d" / "mailsuite.conf")
    pattern = parser.get("Definition", "failregex").strip()
    return re.compile(pattern.replace("<HOST>", r"(?P<host>[0-9A-Fa-f.:]+)"))


def fail2ban_view(line: str) -> str:
    """The line as fail2ban applies failregex to it: with the date cut out."""
    return STAMP.sub("", line, count=1)


def test_the_fail2ban_filter_matches_every_failed_login_with_the_real_address(server):
    ports, log_file = server
    for kind, attempt, _protocol, breaks in ATTEMPTS:
        attempt(ports[kind], f"f2b-{attempt.__name__}{breaks}{FORGED}")
    lines = log_lines(log_file, "f2b-pop3_user_pass")
    regex = failregex()
    matched = [m for m in (regex.search(fail2ban_view(line)) for line in lines) if m]
    protocols = {
        protocol
        for _, attempt, protocol, _ in ATTEMPTS
        for line in lines
        if f"login failed for f2b-{attempt.__name__}" in line and regex.search(fail2ban_view(line))
    }
    assert protocols == {"smtp", "imap", "pop3", "managesieve"}
    assert {m["host"] for m in matched} == {"127.0.0.1"}


def test_the_fail2ban_filter_ignores_forged_and_other_lines():
    regex = failregex()
    stamp = "2026-12-05T21:08:03.123+0000 "
    real = stamp + "info mailsuite.auth: imap login failed for bob@example.test from 203.0.113.9"
    assert regex.search(fail2ban_view(real))["host"] == "203.0.113.9"
    throttled = real.replace("failed", "throttled") + " (8s)"
    assert regex.search(fail2ban_view(throttled))["host"] == "203.0.113.9"
    # A user name that tries to put its own address at the end, as escaped by the server:
    user = token("x from 198.51.100.66\n" + FORGED)
    escaped = f"{stamp}info mailsuite.auth: imap login failed for {user} from 203.0.113.9"
    assert regex.search(fail2ban_view(escaped))["host"] == "203.0.113.9"
    # The line the forger wanted, unescaped, inside another message: not a failed login.
    assert not regex.search(fail2ban_view(stamp + "info mailsuite.imap: imap BAD LOGIN " + FORGED))
    # Another namespace cannot pose as the authenticator.
    other = stamp + "info mailsuite.smtp: imap login failed for root from 198.51.100.66"
    assert not regex.search(fail2ban_view(other))
    assert not regex.search(
        fail2ban_view(stamp + "info mailsuite.auth: imap login bob from 1.2.3.4")
    )


def test_visible_escapes_control_and_invisible_characters_and_bounds_length():
    assert visible("a\nb\r\tc\\d") == "a\\nb\\r\\tc\\\\d"
    assert visible("\x00\x1b[31m\x7f\x85") == "\\x00\\x1b[31m\\x7f\\x85"
    assert visible("\u2028\u202e\ufeff") == "\\u2028\\u202e\\ufeff"
    assert visible("Grüße été 日本") == "Grüße été 日本"
    assert visible(b"ok\xff\n") == "ok\\xff\\n"
    assert visible(None) == "-"
    long = visible("x" * 1000)
    assert long == "x" * 200 + "..."
    assert visible("y" * 50, limit=10) == "y" * 10 + "..."
    assert token("a b\nc") == "a\\x20b\\nc"
    assert "\n" not in visible("".join(chr(i) for i in range(0x110000) if not 0xD800 <= i < 0xE000))
