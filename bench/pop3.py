#!/usr/bin/env python3
"""POP3 benchmark: STAT, UIDL and RETR of every message of a maildrop, and RETR of one big message.

By default it starts mailsuite's POP3 server in a child process on a fresh data folder on
loopback, drops the messages into the users' Maildirs (as any delivery agent would), times the
operations with a small raw-socket client (so the client's line handling does not dominate) and
reports the server process's peak RSS (VmHWM).

With --port it measures another server instead (e.g. the Dovecot peer of ../shared/peers): give
--maildir / --big-maildir, the Maildirs that server serves for --user / --big-user; the same
generated messages are written there (owned like the Maildir) so both servers serve equal bytes.

  python3 bench/pop3.py --messages 1000 --big-mb 20 --repeat 3
  python3 bench/pop3.py --serve-only     # then e.g. ../shared/peers/bench_pop3.py --port N
  python3 bench/pop3.py --port 12110 --user user49@example.test --password pass \\
      --maildir /tmp/peers/mail/example.test/user49 \\
      --big-user user48@example.test --big-maildir /tmp/peers/mail/example.test/user48
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu meeting "
    "report invoice schedule release build deploy review budget travel"
).split()


def make_message(rng: random.Random, i: int) -> bytes:
    """A plausible 2-8 KB text message with LF line ends (as Maildir delivery agents store)."""
    target = rng.randint(2000, 8000)
    head = [
        f"Return-Path: <sender{i % 37}@example.net>",
        f"Received: from mx.example.net (mx.example.net [192.0.2.{i % 250 + 1}])\n"
        f"\tby mail.example.test with ESMTPS id {rng.getrandbits(48):012x}",
        f"Message-ID: <{i}.{rng.getrandbits(40):010x}@example.net>",
        "Date: Tue, 14 Nov 2023 22:13:20 +0000",
        f"From: Sender {i % 37} <sender{i % 37}@example.net>",
        "To: Bench <bench@example.test>",
        f"Subject: {' '.join(rng.choice(WORDS) for _ in range(5))} #{i}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    body, size = [], sum(len(h) + 1 for h in head) + 1
    while size < target:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        if rng.random() < 0.03:
            line = "." + line  # exercises dot-stuffing
        body.append(line)
        size += len(line) + 1
    return ("\n".join(head) + "\n\n" + "\n".join(body) + "\n").encode()


def make_big(megabytes: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\n"
    head = b"From: big@example.net\nTo: bench@example.test\nSubject: big\n\n"
    return head + line * (megabytes * 1024 * 1024 // len(line))


def fill_maildir(maildir: Path, messages: list[bytes]) -> None:
    """Empty `maildir` and drop the messages into new/ (owned like the Maildir itself)."""
    st = os.stat(maildir)
    for sub in ("new", "cur"):
        for name in os.listdir(maildir / sub):
            os.unlink(maildir / sub / name)
    for name in os.listdir(maildir):
        # Index files of whichever server served it before: start both servers cold.
        if name.startswith(("dovecot", "mailsuite-index")) and (maildir / name).is_file():
            os.unlink(maildir / name)
    base = int(time.time())
    for i, data in enumerate(messages):
        path = maildir / "new" / f"{base}.M{i}P{os.getpid()}.bench"
        path.write_bytes(data)
        os.chown(path, st.st_uid, st.st_gid)


class RawPop3:
    """Just enough POP3 to time a server: status lines and multi-line bodies, no parsing."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.status()

    def status(self) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            self._recv()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"server said {line!r}")
        return line

    def _recv(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise RuntimeError("connection closed")
        self.buf += data

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.status()

    def multi(self, line: str) -> int:
        """Send a command with a multi-line answer; returns the octets of the body."""
        self.command(line)
        # The body ends at CRLF "." CRLF; the buffer may start right at the terminator.
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return 0
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                del self.buf[: i + 5]
                return i + 2
            start = max(0, len(self.buf) - 4)
            self._recv()

    def close(self) -> None:
        try:
            self.command("QUIT")
        finally:
            self.sock.close()


def login(port: int, user: str, password: str) -> RawPop3:
    c = RawPop3(port)
    c.command(f"USER {user}")
    c.command(f"PASS {password}")
    return c


def one_rep(a, res: dict) -> None:
    def rec(name: str, dt: float, octets: int = 0) -> None:
        r = res.setdefault(name, {"times": [], "octets": octets})
        r["times"].append(dt)

    t0 = time.perf_counter()
    c = login(a.port, a.user, a.password)
    rec("connect+USER/PASS", time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = int(c.command("STAT").split()[1])
    rec("STAT", time.perf_counter() - t0)
    t0 = time.perf_counter()
    c.multi("UIDL")
    rec("UIDL", time.perf_counter() - t0)
    t0 = time.perf_counter()
    total = 0
    for i in range(1, n + 1):
        total += c.multi(f"RETR {i}")
    rec(f"RETR all {n}", time.perf_counter() - t0, total)
    c.close()
    if a.big_mb:
        c = login(a.port, a.big_user, a.password)
        t0 = time.perf_counter()
        octets = c.multi("RETR 1")
        rec(f"RETR {a.big_mb} MB", time.perf_counter() - t0, octets)
        c.close()


def serve(data_dir: Path, port_file: Path) -> None:
    """Child process: mailsuite's POP3 listener on loopback, plaintext logins allowed there;
    the same listening socket and transport as `mailsuite serve` gives it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import dataclasses

    from twisted.internet import reactor

    from mailsuite.app import ListenerService
    from mailsuite.config import Config
    from mailsuite.pop3.server import build_factory
    from mailsuite.services import Services

    cfg = Config(data_dir=data_dir)
    cfg = dataclasses.replace(
        cfg,
        auth=dataclasses.replace(cfg.auth, plaintext="loopback"),
        tls=dataclasses.replace(cfg.tls, cert=data_dir / "cert.pem", key=data_dir / "key.pem"),
    )
    services = Services.create(cfg)
    listener = ListenerService("pop3", "127.0.0.1:0", build_factory(services, "pop3"))
    listener.startService()
    port_file.write_text(str(listener.port))
    reactor.run()


def start_own_server(a, tmp: Path) -> subprocess.Popen:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from mailsuite.accounts.db import Accounts

    data = tmp / "data"
    (data / "mail").mkdir(parents=True)
    accounts = Accounts(data / "accounts.sqlite", ["example.test"])
    from mailsuite.store import Store

    store = Store(data / "mail")
    for user in (a.user, a.big_user):
        accounts.add_user(user, a.password)
        store.create_mailbox(user)
    a.maildir = str(store.path_for(a.user))
    a.big_maildir = str(store.path_for(a.big_user))
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data), "--port-file", str(port_file)],
        cwd=root,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    a.port = int(port_file.read_text())
    return proc


def rss_mb(pid: int, field: str = "VmHWM") -> float | None:
    """VmHWM: peak resident set size; VmRSS: current."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--big-mb", type=int, default=20, help="size of the big message (0: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--port", type=int, help="measure the server on this loopback port instead")
    ap.add_argument("--user", default="bench@example.test")
    ap.add_argument("--big-user", default="big@example.test")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--maildir", help="Maildir of --user on the other server")
    ap.add_argument("--big-maildir", help="Maildir of --big-user on the other server")
    ap.add_argument(
        "--serve-only",
        action="store_true",
        help="fill the maildrops, start mailsuite and wait (to run another client against it)",
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(Path(a.serve), Path(a.port_file))
        return
    if a.serve_only and a.port is not None:
        raise SystemExit("--serve-only starts mailsuite; it does not go with --port")
    a.repeat = max(1, min(a.repeat, 20))
    tmp = Path(tempfile.mkdtemp(prefix="bench-pop3-"))
    proc = None
    try:
        if a.port is None:
            proc = start_own_server(a, tmp)
            name = f"mailsuite (pid {proc.pid})"
        else:
            if not a.maildir or (a.big_mb and not a.big_maildir):
                raise SystemExit("--port needs --maildir (and --big-maildir unless --big-mb 0)")
            name = f"server on port {a.port}"
        rss_start = rss_mb(proc.pid, "VmRSS") if proc else None
        rng = random.Random(a.seed)
        msgs = [make_message(rng, i) for i in range(a.messages)]
        fill_maildir(Path(a.maildir), msgs)
        if a.big_mb:
            fill_maildir(Path(a.big_maildir), [make_big(a.big_mb)])
        rss_login = None
        if proc:
            # One login first, then reset the peak (clear_refs "5"): the peak reported is that
            # of the POP3 work, not of the one-time argon2 verification (64 MiB memory cost).
            login(a.port, a.user, a.password).close()
            rss_login = rss_mb(proc.pid)
            try:
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
            except OSError:
                rss_login = None
        if a.serve_only:
            print(
                f"serving {a.user} ({a.messages} msgs) and {a.big_user} on 127.0.0.1:{a.port},"
                f" password {a.password!r}; Ctrl-C or SIGTERM to pid {os.getpid()} to stop",
                flush=True,
            )
            # SIGTERM too: a shell's background job ignores SIGINT.
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                proc.wait()
            except KeyboardInterrupt:
                pass
            return
        res: dict = {}
        for _ in range(a.repeat):
            one_rep(a, res)
        rss = rss_mb(proc.pid) if proc else None
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    stored = sum(len(m) for m in msgs)
    print(f"\nPOP3 {name}: {a.messages} msgs ({stored / 1e6:.1f} MB stored), {a.repeat} reps")
    print(f"{'operation':<20} {'first s':>9} {'median s':>9} {'min s':>9}  rate (median)")
    for op, r in res.items():
        ts = r["times"]
        med = statistics.median(ts)
        rate = ""
        if r["octets"]:
            rate = f"{r['octets'] / med / 1e6:.1f} MB/s"
            if op.startswith("RETR all"):
                rate = f"{a.messages / med:.0f} msg/s, " + rate
        print(f"{op:<20} {ts[0]:9.4f} {med:9.4f} {min(ts):9.4f}  {rate}")
    if rss is None:
        print("server peak RSS: n/a (external server)")
    else:
        line = f"server RSS: {rss_start:.1f} MB after start"
        if rss_login is not None:
            line += f", peak {rss_login:.1f} MB after the first login (argon2), peak {rss:.1f} MB"
            line += " during the timed runs"
        else:
            line += f", peak {rss:.1f} MB"
        print(line)


if __name__ == "__main__":
    main()
