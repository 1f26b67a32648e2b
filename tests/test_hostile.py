"""Hostile clients against a real `mailsuite serve` process: one client's flood never keeps
another waiting, and a client that never reads cannot make the process grow."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import zlib
from pathlib import Path

from tests.conftest import (
    DEFAULT_PASSWORD,
    base_config,
    client_tls_context,
    ready,
    run_cli,
    toml_dumps,
)
from tests.test_app import ServeProcess

USER = "alice@example.test"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def start(tmp_path: Path) -> ServeProcess:
    """A server with USER, added before it starts: an admin command and the server's first
    start racing to create the account database is not what these tests are about."""
    root = tmp_path / "serve"
    root.mkdir(parents=True)
    config_path = root / "mailsuite.toml"
    config_path.write_text(toml_dumps(base_config(root)))
    result = run_cli(
        "--config",
        str(config_path),
        "user",
        "add",
        USER,
        "--password-stdin",
        input=(DEFAULT_PASSWORD + "\n").encode(),
    )
    assert result.returncode == 0, result.stderr
    sp = ServeProcess(root)
    sp.wait_listening()
    return sp


def line(sock) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    return buf


def smtp_greeting_seconds(port: int) -> float:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        assert line(s).startswith(b"220")
    return time.monotonic() - t0


def compress_flood(port: int, stop: threading.Event) -> None:
    """RFC 4978 COMPRESS, then 20 MB of pipelined NOOPs in ~30 KB of DEFLATE, replies read."""
    sock = client_tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port)))
    line(sock)
    sock.sendall(f'a LOGIN {USER} "{DEFAULT_PASSWORD}"\r\nb COMPRESS DEFLATE\r\n'.encode())
    while not line(sock).startswith(b"b OK"):
        pass
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = b"".join(comp.compress(b"x NOOP\r\n" * 131072) for _ in range(20))
    out = memoryview(out + comp.flush(zlib.Z_SYNC_FLUSH))
    sock.setblocking(False)
    while not stop.is_set():
        readable, writable = ready(sock, bool(out), 0.2)
        try:
            if readable or sock.pending():
                if not sock.recv(65536):
                    break
            if writable and out:
                out = out[sock.send(out[:16384]) :]
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
    sock.close()


def test_smtp_greets_at_once_while_an_imap_compress_flood_runs(tmp_path):
    sp = start(tmp_path)
    try:
        stop = threading.Event()
        flood = threading.Thread(target=compress_flood, args=(sp.ports["imaps"], stop))
        flood.start()
        try:
            time.sleep(1)
            waits = [smtp_greeting_seconds(sp.ports["smtp"]) for _ in range(5)]
        finally:
            stop.set()
            flood.join()
        assert max(waits) < 0.5, waits
    finally:
        sp.kill()


def send_without_reading(port: int, data: bytes) -> None:
    """Send `data` while never reading, until the server stops taking it for 2 s."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    out = memoryview(data)
    quiet = time.monotonic()
    while out and time.monotonic() - quiet < 2:
        ready(sock, True, 0.5)
        try:
            sent = sock.send(out[:65536])
        except BlockingIOError:
            continue
        out = out[sent:]
        quiet = time.monotonic()
    return sock


def test_unread_replies_do_not_grow_the_process(tmp_path):
    """`a CAPABILITY` (IMAP) and `CAPA` (POP3) 4 MB deep, nothing read: the server stops
    reading once its unsent output passes a bound instead of holding ~20 times the input."""
    sp = start(tmp_path)
    try:
        time.sleep(1)
        idle = rss_mb(sp.proc.pid)
        socks = [
            send_without_reading(sp.ports["imap"], b"a CAPABILITY\r\n" * 300_000),
            send_without_reading(sp.ports["pop3"], b"CAPA\r\n" * 700_000),
        ]
        grown = rss_mb(sp.proc.pid) - idle
        for s in socks:
            s.close()
        assert grown < 40, grown
    finally:
        sp.kill()
