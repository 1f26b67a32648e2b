"""Connection slots and pre-login deadlines (mailsuite/limits.py), over real sockets.

Idle sockets from a few addresses must not lock everybody out: when every slot is taken, the
quietest connection that has not logged in is closed to make room, and a logged-in session never
is.  A client that keeps the line busy a byte at a time is closed when the deadline for logging
in (or, on SMTP, for getting a message accepted) passes.  The refusals say which limit was hit.
The default total follows the file-descriptor limit, which `mailsuite serve` raises at start.
"""

from __future__ import annotations

import os
import re
import resource
import select
import socket
import subprocess
import sys
import time

import pytest

from mailsuite.limits import PER_ADDRESS, SERVER_WIDE, ConnectionLimiter
from tests.conftest import DEFAULT_PASSWORD, REPO, base_config, toml_dumps

USER = "alice@example.test"
LOGIN = f'a LOGIN {USER} "{DEFAULT_PASSWORD}"\r\n'.encode()


def readable_within(sock: socket.socket, seconds: float) -> bool:
    """poll(), not select(): a test process that has run many servers holds descriptors above
    select()'s limit of 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(seconds * 1000))


class Peer:
    """A raw client socket from a chosen loopback address (the server sees each as a client)."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 10):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
        )
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def until(self, prefix: bytes) -> bytes:
        """Lines up to the first that starts with `prefix` (a tagged reply, say)."""
        while True:
            line = self.line()
            if line.startswith(prefix):
                return line

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True

    def trickle(self, data: bytes, every: float, limit: float) -> float:
        """Send `data` a byte at a time until the server speaks; the seconds it took."""
        start = time.monotonic()
        for byte in data:
            if time.monotonic() - start > limit:
                break
            self.sock.sendall(bytes([byte]))
            readable = readable_within(self.sock, every)
            if readable:
                return time.monotonic() - start
        raise AssertionError(f"still open after {limit} s of trickling")

    def close(self) -> None:
        self.sock.close()


def active(srv) -> int:
    return srv.call(lambda: srv.services.connections.active)


# --- slots ------------------------------------------------------------------------------------


def test_idle_sockets_from_many_addresses_cannot_keep_a_client_out(server_factory):
    srv = server_factory(
        auth={"plaintext": "loopback"}, limits={"connections_total": 6, "connections_per_ip": 2}
    )
    srv.add_user(USER)
    kinds = ["smtp", "pop3", "imap"]
    idle = []
    for i in range(6):  # every slot taken by sockets that never log in, 2 per address
        peer = Peer(srv.port(kinds[i % 3]), source=f"127.0.0.{2 + i // 2}")
        peer.line()
        idle.append(peer)
    assert active(srv) == 6

    real = Peer(srv.port("imap"), source="127.0.0.9")
    assert real.line().startswith(b"* OK")
    real.send(LOGIN)
    assert real.until(b"a ").startswith(b"a OK")
    # The oldest idle one (SMTP, the first to connect) made room, and was told why.
    assert idle[0].line().startswith(b"421 4.7.0 ")
    assert idle[0].closed()
    assert active(srv) == 6

    # The per-address limit still holds, and says so, in each protocol's words.
    refused = Peer(srv.port("pop3"), source="127.0.0.3")
    assert refused.line() == b"-ERR [SYS/TEMP] Too many connections from your address."
    refused = Peer(srv.port("imap"), source="127.0.0.4")
    assert refused.line() == b"* BYE [UNAVAILABLE] Too many connections from your address"
    assert refused.closed()


def test_500_idle_sockets_from_25_addresses_leave_room_for_a_real_client(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, limits={"connections_total": 500})
    srv.add_user(USER)
    idle = []
    try:
        for i in range(500):
            peer = Peer(srv.port("imap" if i % 2 else "pop3"), source=f"127.0.1.{1 + i % 25}")
            idle.append(peer)
        for peer in idle:
            peer.line()
        assert active(srv) == 500
        real = Peer(srv.port("imap"), source="127.0.2.1")
        assert real.line().startswith(b"* OK")
        real.send(LOGIN)
        assert real.until(b"a ").startswith(b"a OK")
        assert active(srv) == 500
    finally:
        for peer in idle:
            peer.close()


def test_logged_in_sessions_are_never_evicted(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, limits={"connections_total": 2})
    srv.add_user(USER)
    logged_in = Peer(srv.port("imap"), source="127.0.0.2")
    logged_in.line()
    logged_in.send(LOGIN)
    assert logged_in.until(b"a ").startswith(b"a OK")
    time.sleep(0.05)
    idle = Peer(srv.port("pop3"), source="127.0.0.3")
    assert idle.line().startswith(b"+OK")

    # The logged-in session has been quiet longer, yet the one not logged in makes room.
    newcomer = Peer(srv.port("smtp"), source="127.0.0.4")
    assert newcomer.line().startswith(b"220 ")
    assert idle.line() == b"-ERR [SYS/TEMP] Server busy, closing idle connection."
    assert idle.closed()
    logged_in.send(b"b NOOP\r\n")
    assert logged_in.until(b"b ").startswith(b"b OK")

    # A mail transaction holds its slot too: now every slot is held, and newcomers are refused
    # with the server-wide reason.
    newcomer.send(b"EHLO c\r\n")
    assert newcomer.until(b"250 ").startswith(b"250 ")
    newcomer.send(b"MAIL FROM:<a@remote.test>\r\n")
    assert newcomer.line().startswith(b"250 ")
    refused = Peer(srv.port("imap"), source="127.0.0.5")
    text = b"* BYE [UNAVAILABLE] Too many connections to this server, try again later"
    assert refused.line() == text
    refused = Peer(srv.port("pop3"), source="127.0.0.5")
    text = b"-ERR [SYS/TEMP] Too many connections to this server, try again later."
    assert refused.line() == text
    assert active(srv) == 2


class Held:
    """A connection as the limiter sees one (the adapters are the real ones, above)."""

    def __init__(self, established: bool, seen: float):
        self.established, self.seen, self.evicted = established, seen, False

    def is_established(self) -> bool:
        return self.established

    def last_activity(self) -> float:
        return self.seen

    def evict(self) -> None:
        self.evicted = True


def test_room_is_made_past_any_number_of_established_sessions():
    limiter = ConnectionLimiter(60, 100)
    held = [Held(True, 0.0) for _ in range(50)] + [Held(False, t) for t in (5.0, 3.0, 4.0)]
    held += [Held(True, 1.0) for _ in range(7)]
    for conn in held:
        assert limiter.admit(conn, "192.0.2.1") is None
    newcomer = Held(False, 9.0)
    assert limiter.admit(newcomer, "192.0.2.2") is None
    assert [c.seen for c in held if c.evicted] == [3.0]  # the quietest not logged in
    assert limiter.active == 60
    second = Held(False, 9.0)
    assert limiter.admit(second, "192.0.2.3") is None
    assert [c.seen for c in held if c.evicted] == [3.0, 4.0]
    limiter.release(held[51])  # released after its eviction: nothing changes
    assert limiter.active == 60
    for conn in [*held, newcomer, second]:
        conn.established = True
    # Only when every slot is held by an established session is a newcomer refused.
    assert limiter.admit(Held(False, 9.0), "192.0.2.4") == SERVER_WIDE
    # The per-address limit refuses, and never makes room.
    limiter = ConnectionLimiter(60, 2)
    assert limiter.admit(Held(False, 1.0), "192.0.2.1") is None
    assert limiter.admit(Held(False, 1.0), "192.0.2.1") is None
    assert limiter.admit(Held(False, 1.0), "192.0.2.1") == PER_ADDRESS


# --- deadlines --------------------------------------------------------------------------------


def test_imap_trickling_client_is_closed_at_the_login_deadline(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, imap={"login_deadline": 2})
    peer = Peer(srv.port("imap"))
    peer.line()
    took = peer.trickle(b"a " + b"x" * 200, every=0.3, limit=10)
    assert 1.5 < took < 5
    assert peer.line() == b"* BYE No login in time"
    assert peer.closed()


def test_imap_logged_in_session_outlives_the_login_deadline(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, imap={"login_deadline": 1})
    srv.add_user(USER)
    peer = Peer(srv.port("imap"))
    peer.line()
    peer.send(LOGIN)
    assert peer.until(b"a ").startswith(b"a OK")
    time.sleep(1.5)
    peer.send(b"b NOOP\r\n")
    assert peer.until(b"b ").startswith(b"b OK")


def test_pop3_trickling_client_is_closed_at_the_login_deadline(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, pop3={"login_deadline": 2})
    srv.add_user(USER)
    peer = Peer(srv.port("pop3"))
    peer.line()
    took = peer.trickle(b"USER " + b"x" * 200, every=0.3, limit=10)
    assert 1.5 < took < 5
    assert peer.line() == b"-ERR No login in time, closing connection."
    assert peer.closed()

    peer = Peer(srv.port("pop3"))
    peer.line()
    peer.send(f"USER {USER}\r\nPASS {DEFAULT_PASSWORD}\r\n".encode())
    assert peer.line().startswith(b"+OK") and peer.line().startswith(b"+OK")
    time.sleep(2.5)
    peer.send(b"NOOP\r\n")
    assert peer.line().startswith(b"+OK")


def test_smtp_trickling_client_is_closed_at_the_session_deadline(server_factory):
    srv = server_factory(smtp={"session_deadline": 2})
    peer = Peer(srv.port("smtp"))
    peer.line()
    took = peer.trickle(b"EHLO " + b"x" * 200, every=0.3, limit=10)
    assert 1.5 < took < 5
    assert peer.line().startswith(b"421 4.4.2 ")
    assert peer.closed()


def test_smtp_session_with_an_accepted_message_outlives_the_deadline(server_factory):
    srv = server_factory(smtp={"session_deadline": 2})
    srv.add_user(USER)
    peer = Peer(srv.port("smtp"))
    peer.line()
    peer.send(b"HELO c\r\nMAIL FROM:<a@remote.test>\r\n")
    peer.send(f"RCPT TO:<{USER}>\r\nDATA\r\n".encode())
    assert [peer.line()[:3] for _ in range(4)] == [b"250", b"250", b"250", b"354"]
    # A message still arriving when the deadline passes gets `data_timeout` more.
    took = 0.0
    while took < 2.5:
        took += 0.5
        peer.send(b"Subject: slow\r\n")
        assert not readable_within(peer.sock, 0.5)
    peer.send(b"\r\nbody\r\n.\r\n")
    assert peer.line().startswith(b"250 2.0.0 Ok: queued")
    time.sleep(0.5)
    peer.send(b"NOOP\r\n")
    assert peer.line().startswith(b"250 ")


# --- the file-descriptor limit ------------------------------------------------------------------


def _lowered_soft_limit(soft: int):
    def lower():
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))

    return lower


def test_default_total_follows_the_file_descriptor_limit():
    code = (
        "import resource\n"
        "from mailsuite.limits import ConnectionLimiter, raise_fd_limit\n"
        "before = ConnectionLimiter(0, 20).total\n"
        "print(before, ConnectionLimiter(100000, 20).total, raise_fd_limit(),"
        " ConnectionLimiter(0, 20).total, ConnectionLimiter(50, 20).total)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=_lowered_soft_limit(1024),
        check=True,
    ).stdout.split()
    before, clamped, raised, after, explicit = map(int, out)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert before == clamped == (1024 - 256) // 2  # an explicit total past the limit is lowered
    assert raised == hard
    assert after == min(10000, (hard - 256) // 2)
    assert explicit == 50


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= 1024, reason="hard limit too low to raise"
)
def test_serve_raises_the_soft_limit_and_sizes_the_total_by_it(tmp_path):
    config = tmp_path / "mailsuite.toml"
    config.write_text(toml_dumps(base_config(tmp_path)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(config), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        preexec_fn=_lowered_soft_limit(1024),
    )
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            m = re.search(
                r"connections: (\d+) in all, 20 per address \(file descriptors: (\d+)", line
            )
            if m:
                break
        else:
            raise AssertionError("".join(seen))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert int(m.group(2)) == hard
        assert int(m.group(1)) == min(10000, (hard - 256) // 2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
