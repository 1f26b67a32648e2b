#!/usr/bin/env python3
"""Hostile clients against a real server process: fairness and memory.

Starts `mailsuite serve` in a child process on a fresh data folder on loopback (the mailsuite
found on PYTHONPATH: run it with PYTHONPATH=/work/base for the code before a change), then:

1. an IMAP client on 993 logs in, sends COMPRESS DEFLATE and a deflate bomb (a few tens of KB
   that inflate to --flood-mb of pipelined `x NOOP`), reading the replies; meanwhile new SMTP
   connections time their greeting (target: under 0.5 s);
2. --connections hostile connections at once, a third each: IMAP literals before login
   (`a LOGIN {66000000}`, then --kb of literal data), IMAP `a CAPABILITY` --kb deep and POP3
   `CAPA` --kb deep, none of them reading; the server's RSS while they are open (target: under
   300 MB above idle) and after they close (target: within 10 % of idle).

  python3 bench/hostile.py --connections 500 --kb 256 --flood-mb 50
"""

from __future__ import annotations

import argparse
import os
import re
import select
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

USER, PASSWORD = "bench@example.test", "Hostile-Passw0rd-9"
KINDS = ("smtp", "imap", "imaps", "pop3")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    """`mailsuite serve` in a child process on free loopback ports."""

    def __init__(self, root: Path, connections: int):
        cfg = root / "mailsuite.toml"
        listen = "\n".join(f'{k} = ["127.0.0.1:0"]' for k in KINDS)
        others = "\n".join(f"{k} = []" for k in ("submission", "submissions", "pop3s", "http"))
        cfg.write_text(
            f'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
            f'data_dir = "{root / "data"}"\n'
            "allow_root = true\n"
            f'[tls]\ncert = "{root / "mail.pem"}"\nkey = "{root / "mail.key"}"\nself_signed = true\n'
            f'[auth]\nplaintext = "loopback"\n'
            f"[limits]\nconnections_total = {connections + 100}\n"
            f"connections_per_ip = {connections + 100}\n"
            f"[listen]\n{listen}\n{others}\n"
        )
        base = [sys.executable, "-m", "mailsuite.cli", "--config", str(cfg)]
        subprocess.run(
            [*base, "user", "add", USER, "--password-stdin"],
            input=(PASSWORD + "\n").encode(),
            check=True,
            capture_output=True,
            cwd=root,
        )
        # cwd: the mailsuite on PYTHONPATH is imported, not one in the current folder.
        self.proc = subprocess.Popen(
            [*base, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root
        )
        self.ports: dict[str, int] = {}
        pattern = re.compile(r"listening for (\w+) on 127\.0\.0\.1:(\d+)")
        while len(self.ports) < len(KINDS):
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("the server did not start")
            m = pattern.search(line)
            if m:
                self.ports[m.group(1)] = int(m.group(2))
        self.log: list[str] = []
        threading.Thread(target=self._keep_log, daemon=True).start()

    def _keep_log(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)

    def count(self, text: str) -> int:
        return sum(1 for line in list(self.log) if text in line)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still busy with a flood (the code before the fix)
            self.proc.kill()
            self.proc.wait()


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def read_line(sock) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(buf)
        buf += chunk
    return buf


def greeting_latency(port: int) -> float:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as s:
        line = read_line(s)
    assert line.startswith(b"220"), line
    return time.monotonic() - t0


def deflate_bomb(mb: int) -> bytes:
    """Raw DEFLATE (RFC 4978) of `mb` MB of pipelined NOOPs."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = b"x NOOP\r\n" * 131072  # 1 MiB
    out = [comp.compress(block) for _ in range(mb)]
    return b"".join(out) + comp.flush(zlib.Z_SYNC_FLUSH)


def compress_flood(port: int, mb: int, stop: threading.Event, stats: dict) -> None:
    """Log in over 993, COMPRESS DEFLATE, send the bomb and read the replies until `stop`."""
    sock = tls_context().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))
    read_line(sock)
    sock.sendall(f'a LOGIN {USER} "{PASSWORD}"\r\n'.encode())
    while not read_line(sock).startswith(b"a "):
        pass
    sock.sendall(b"b COMPRESS DEFLATE\r\n")
    assert read_line(sock).startswith(b"b OK"), "COMPRESS refused"
    out = memoryview(deflate_bomb(mb))
    stats["bomb_kb"] = len(out) / 1024
    inflate = zlib.decompressobj(-15)
    sock.setblocking(False)
    received = 0
    while not stop.is_set():
        r, w, _ = select.select([sock], [sock] if out else [], [], 0.2)
        if r or sock.pending():
            try:
                data = sock.recv(65536)
                if not data:
                    break
                received += len(inflate.decompress(data))
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
        if w and out:
            try:
                out = out[sock.send(out[:16384]) :]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
    stats["replies_mb"] = received / 1e6
    sock.close()


def hostile_connections(ports: dict, n: int, kb: int) -> list[socket.socket]:
    """Open `n` connections that send without reading; returns once nothing more is taken."""
    data = {
        "literal": (ports["imap"], b"a LOGIN {66000000}\r\n" + b"z" * (kb * 1024)),
        "capability": (ports["imap"], b"a CAPABILITY\r\n" * (kb * 1024 // 14)),
        "capa": (ports["pop3"], b"CAPA\r\n" * (kb * 1024 // 6)),
    }
    kinds = list(data)
    socks, pending = [], {}
    for i in range(n):
        port, payload = data[kinds[i % 3]]
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        socks.append(s)
        pending[s] = memoryview(payload)
    quiet_since = time.monotonic()
    while pending and time.monotonic() - quiet_since < 3:
        _, writable, _ = select.select([], list(pending), [], 0.5)
        for s in writable:
            try:
                sent = s.send(pending[s][:65536])
            except (BlockingIOError, ConnectionError):
                sent = 0
                if s in pending and s.fileno() < 0:
                    del pending[s]
            if sent:
                quiet_since = time.monotonic()
                pending[s] = pending[s][sent:]
                if not pending[s]:
                    del pending[s]
    return socks


def settle_rss(server: Server, seconds: float) -> float:
    """The RSS once it stops falling (or after `seconds`)."""
    last, deadline = server.rss(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        now = server.rss()
        if abs(now - last) < 1:
            return now
        last = now
    return last


def concurrent_guesses(port: int, n: int) -> None:
    """`n` IMAP LOGINs with a wrong password for one account, all at once."""

    def guess() -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                read_line(sock)
                sock.sendall(f'g LOGIN {USER} "wrong-guess"\r\n'.encode())
                while not read_line(sock).startswith(b"g "):
                    pass
        except (OSError, EOFError):
            pass

    threads = [threading.Thread(target=guess) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=500, help="hostile connections at once")
    ap.add_argument("--kb", type=int, default=256, help="KB each hostile connection sends")
    ap.add_argument("--flood-mb", type=int, default=50, help="MB the deflate bomb inflates to")
    ap.add_argument("--samples", type=int, default=12, help="SMTP greetings timed in the flood")
    ap.add_argument("--guesses", type=int, default=60, help="concurrent wrong IMAP logins")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="mailsuite-hostile-") as tmp:
        server = Server(Path(tmp), args.connections)
        try:
            greeting_latency(server.ports["smtp"])
            idle = settle_rss(server, 5)

            stop, stats = threading.Event(), {}
            flood = threading.Thread(
                target=compress_flood, args=(server.ports["imaps"], args.flood_mb, stop, stats)
            )
            flood.start()
            time.sleep(1)
            latencies, flood_rss = [], 0.0
            for _ in range(args.samples):
                latencies.append(greeting_latency(server.ports["smtp"]))
                flood_rss = max(flood_rss, server.rss())
                time.sleep(0.25)
            stop.set()
            flood.join()

            greeting_latency(server.ports["smtp"])  # the reactor is free again
            before_hostile = settle_rss(server, 10)
            socks = hostile_connections(server.ports, args.connections, args.kb)
            hostile = 0.0
            for _ in range(2):  # the peak while they stay open, also once the reactor is free
                for _ in range(6):
                    hostile = max(hostile, server.rss())
                    time.sleep(0.5)
                greeting_latency(server.ports["smtp"])
            for s in socks:
                s.close()
            after = settle_rss(server, 20)

            checked_before = server.count("imap login failed for")
            concurrent_guesses(server.ports["imap"], args.guesses)
            time.sleep(1)
            checked = server.count("imap login failed for") - checked_before
        finally:
            server.stop()

    rows = [
        ("idle RSS", f"{idle:.0f} MB", ""),
        (
            f"SMTP greeting during a {args.flood_mb} MB COMPRESS flood "
            f"({stats.get('bomb_kb', 0):.0f} KB sent), median / max",
            f"{statistics.median(latencies):.3f} / {max(latencies):.3f} s",
            "< 0.5 s",
        ),
        ("replies the flood read while timed", f"{stats.get('replies_mb', 0):.1f} MB", ""),
        ("RSS during the flood, above idle", f"{flood_rss - idle:.0f} MB", ""),
        (
            f"RSS with {args.connections} hostile connections ({args.kb} KB each), above idle",
            f"{hostile - idle:.0f} MB",
            "< 300 MB",
        ),
        (
            "RSS after they closed, against idle",
            f"{(after - idle) / idle * 100:+.0f} % ({after:.0f} MB; before them "
            f"{before_hostile:.0f} MB)",
            "within 10 %",
        ),
        (
            f"passwords checked during {args.guesses} concurrent wrong logins",
            f"{checked}",
            "no more than [auth] free_failures (3)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>28}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>28}  {target}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
