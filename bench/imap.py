#!/usr/bin/env python3
"""IMAP benchmark: APPEND a mailbox, time the operations clients use, mixed parallel load,
many IDLE connections; prints a table with the server's peak RSS.

By default it starts mailsuite (IMAP listener only) in a child process on a fresh data folder
on loopback.  With --port it measures another server instead, e.g. the Dovecot peer of
../shared/peers (then RSS is read from --pid when given).

  python3 bench/imap.py --messages 10000 --clients 10 --duration 20 --idle 1000
  python3 bench/imap.py --fill ...        # own server: messages written into the Maildir
  python3 bench/imap.py --port 12143 --user user45@example.test --password pass --reuse

Operations timed (median of --repeat fresh sessions, each on the same mailbox):
connect+LOGIN, SELECT, UID FETCH 1:* (UID FLAGS RFC822.SIZE),
FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)]), UID SEARCH UNSEEN,
SEARCH TEXT, STORE 1:1000 +FLAGS, 100 FETCHes of one small message's BODY.PEEK[] each, FETCH
of a 1 MB message (with --cpu also the server's CPU time for each, read from the scheduler's
figures of every thread of the process that holds the session's socket, so it works for a
process-per-session server such as Dovecot too); then --clients processes doing mixed operations for --duration seconds
(ops/s and the median and 90th percentile latency of one operation), then --idle connections
held in IDLE.
"""

from __future__ import annotations

import argparse
import imaplib
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "meeting budget report project release deadline invoice schedule review update server "
    "mailbox forecast customer contract proposal agenda minutes summary draft the of and to in "
    "is it that was for on are with as they be at one have this from or had by word but what "
    "some can out other were all there when up use your how said each which do their time"
).split()
NAMES = ["Alice Smith", "Bob Jones", "Carol Müller", "Dave Chen", "Erin Rossi", "Frank Novak"]
TEXT_WORD = "zebracorn"


def make_message(rng: random.Random, i: int) -> bytes:
    """A 2-8 KB message with realistic headers; every 4th is multipart with an attachment."""
    sender = rng.choice(NAMES)
    addr = sender.split()[0].lower() + "@example.org"
    subject = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
    if i % 20 == 0:
        subject = "quarterly " + subject
    words = [rng.choice(WORDS) for _ in range(rng.randint(300, 1300))]
    if i % 100 == 0:
        words.insert(len(words) // 2, TEXT_WORD)
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) > 11:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    text = "\r\n".join(lines)
    head = (
        f"Return-Path: <{addr}>\r\n"
        f"Received: from mx.example.org (mx.example.org [192.0.2.{i % 250 + 1}])\r\n"
        f"\tby mail.example.test with ESMTPS id {rng.getrandbits(48):012x}\r\n"
        f"Message-ID: <{i}.{rng.getrandbits(40):010x}@example.org>\r\n"
        f"Date: Tue, {1 + i % 28} Nov 2023 22:13:20 +0000\r\n"
        f'From: "{sender}" <{addr}>\r\nTo: Bench <bench@example.test>\r\n'
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
    )
    if i % 4:
        return (head + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n").encode()
    boundary = f"b{i}x"
    att = "\r\n".join(
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx" for _ in range(8)
    )
    return (
        head + f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--{boundary}\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
        f"Content-Transfer-Encoding: base64\r\n\r\n{att}\r\n--{boundary}--\r\n"
    ).encode()


def make_big() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    head = b"From: big@example.org\r\nTo: bench@example.test\r\nSubject: big one\r\n\r\n"
    return head + line * (1024 * 1024 // len(line))


# -- server ----------------------------------------------------------------------------------


def serve(data_dir: Path, port_file: Path) -> None:
    """Child process: mailsuite's IMAP listener on loopback, plaintext logins allowed there."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import dataclasses

    from twisted.internet import reactor

    from mailsuite import heap
    from mailsuite.app import _Port
    from mailsuite.config import Config
    from mailsuite.imap.server import build_factory
    from mailsuite.services import Services

    cfg = Config(data_dir=data_dir)
    cfg = dataclasses.replace(
        cfg,
        auth=dataclasses.replace(cfg.auth, plaintext="loopback"),
        limits=dataclasses.replace(cfg.limits, connections_total=5000, connections_per_ip=5000),
        tls=dataclasses.replace(cfg.tls, cert=data_dir / "cert.pem", key=data_dir / "key.pem"),
    )
    services = Services.create(cfg)
    # The process settings `mailsuite serve` starts with (app.serve): the collector's
    # thresholds for a server holding big folder indexes, the shorter GIL switch interval.
    sys.setswitchinterval(0.0005)
    heap.tune_collector()
    # The listening socket class `mailsuite serve` uses (its write-through transport), with a
    # deeper backlog for the benchmark's bursts of connections.
    port = _Port(0, build_factory(services, "imap"), 1024, "127.0.0.1", reactor)
    port.startListening()
    port_file.write_text(str(port.getHost().port))
    reactor.run()


def fill_maildir(maildir: Path, a) -> None:
    """Drop the messages into the Maildir as a delivery agent would (LF line ends, `,S=` and
    `,W=` sizes in the name), instead of APPENDing them one by one."""
    rng = random.Random(a.seed)
    msgs = [make_message(rng, i) for i in range(a.messages)] + [make_big()]
    for i, msg in enumerate(msgs):
        lf = msg.replace(b"\r\n", b"\n")
        name = f"{1_700_000_000 + i}.M{i}P1Q{i}.bench,S={len(lf)},W={len(msg)}"
        seen = i == len(msgs) - 1 or rng.random() < 0.7
        (maildir / "cur" / (name + (":2,S" if seen else ":2,"))).write_bytes(lf)


def start_own_server(a, tmp: Path) -> subprocess.Popen:
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from mailsuite.accounts.db import Accounts
    from mailsuite.store import Store

    data = tmp / "data"
    (data / "mail").mkdir(parents=True)
    Accounts(data / "accounts.sqlite", ["example.test"]).add_user(a.user, a.password)
    store = Store(data / "mail")
    store.create_mailbox(a.user)
    if a.fill:
        fill_maildir(store.path_for(a.user), a)
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(data), "--port-file", str(port_file)], cwd=root
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the server did not start")
        time.sleep(0.05)
    a.port = int(port_file.read_text())
    a.pid = proc.pid
    return proc


def peak_rss_mb(pid: int | None, key: str = "VmHWM:") -> float | None:
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# -- client ----------------------------------------------------------------------------------


def _socket_inode(local_port: int) -> str | None:
    """The inode of the server side of our connection: the socket whose remote port is ours."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[2].rsplit(":", 1)[1], 16) == local_port and f[3] == "01":
                return f[9]
    return None


def session_pids(c: imaplib.IMAP4) -> list[int]:
    """The processes holding the server's end of this client's connection."""
    inode = _socket_inode(c.sock.getsockname()[1])
    if inode is None:
        return []
    target = f"socket:[{inode}]"
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def cpu_ns(pids: list[int]) -> int:
    """Time on the CPU of every thread of these processes (schedstat: nanoseconds)."""
    total = 0
    for pid in pids:
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return total


def connect(a) -> imaplib.IMAP4:
    c = imaplib.IMAP4(a.host, a.port, timeout=300)
    c.login(a.user, a.password)
    return c


def check(resp, what: str):
    typ, data = resp
    if typ != "OK":
        raise SystemExit(f"{what} failed: {typ} {data!r}")
    return data


def preload(a) -> None:
    c = connect(a)
    n = int(check(c.select(a.mailbox), "SELECT")[0])
    if a.fill or (a.reuse and n == a.messages + 1):
        print(f"using the {n} messages already in {a.mailbox}")
        c.logout()
        return
    if n:
        c.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
    rng = random.Random(a.seed)
    t0 = time.perf_counter()
    for i in range(a.messages):
        flags = "(\\Seen)" if rng.random() < 0.7 else None
        check(c.append(a.mailbox, flags, None, make_message(rng, i)), "APPEND")
    check(c.append(a.mailbox, "(\\Seen)", None, make_big()), "APPEND big")
    dt = time.perf_counter() - t0
    print(
        f"preloaded {a.messages + 1} messages by APPEND in {dt:.1f} s "
        f"({(a.messages + 1) / dt:.0f} msg/s)"
    )
    c.logout()


def timed(results: dict, name: str, fn, pids: list[int] | None = None) -> None:
    c0 = cpu_ns(pids) if pids else 0
    t0 = time.perf_counter()
    fn()
    results.setdefault(name, []).append(time.perf_counter() - t0)
    if pids:
        results.setdefault(("cpu", name), []).append((cpu_ns(pids) - c0) / 1e9)


def run_sequence(a, results: dict) -> None:
    def login():
        c = connect(a)
        c.logout()

    for _ in range(5):
        timed(results, "connect+LOGIN", login)
    c = connect(a)
    pids = session_pids(c) if a.cpu else None
    c.select(a.mailbox)
    c.unselect()
    timed(results, "SELECT", lambda: check(c.select(a.mailbox), "SELECT"), pids)
    timed(
        results,
        "UID FETCH 1:* (UID FLAGS RFC822.SIZE)",
        lambda: check(c.uid("FETCH", "1:*", "(UID FLAGS RFC822.SIZE)"), "FETCH"),
        pids,
    )
    timed(
        results,
        "FETCH 1:* (BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])",
        lambda: check(
            c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"), "FETCH"
        ),
        pids,
    )
    timed(
        results,
        "UID SEARCH UNSEEN",
        lambda: check(c.uid("SEARCH", None, "UNSEEN"), "SEARCH"),
        pids,
    )
    timed(
        results,
        f"SEARCH TEXT {TEXT_WORD}",
        lambda: check(c.search(None, "TEXT", TEXT_WORD), "S"),
        pids,
    )
    top = min(1000, a.messages)
    c.store(f"1:{top}", "-FLAGS.SILENT", "(\\Flagged)")
    timed(
        results,
        f"STORE 1:{top} +FLAGS (\\Flagged)",
        lambda: check(c.store(f"1:{top}", "+FLAGS", "(\\Flagged)"), "STORE"),
        pids,
    )
    n = int(check(c.select(a.mailbox), "SELECT")[0])

    def small_bodies():
        for i in range(100):
            check(c.fetch(str(1 + (i * 37) % (n - 1)), "(BODY.PEEK[])"), "FETCH")

    timed(results, "100 x FETCH n (BODY.PEEK[]) of a small message", small_bodies, pids)
    timed(
        results,
        "FETCH 1 MB BODY.PEEK[]",
        lambda: check(c.fetch(str(n), "(BODY.PEEK[])"), "F"),
        pids,
    )
    c.logout()


def mixed_worker(a, seed: int, q) -> None:
    rng = random.Random(seed)
    c = connect(a)
    n = int(check(c.select(a.mailbox), "SELECT")[0])
    latencies = []
    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        t0 = time.perf_counter()
        r = rng.random()
        lo = rng.randint(1, max(1, n - 50))
        if r < 0.25:
            c.uid("FETCH", f"{lo}:{lo + 50}", "(UID FLAGS RFC822.SIZE)")
        elif r < 0.45:
            c.fetch(f"{lo}:{lo + 20}", "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        elif r < 0.6:
            c.fetch(str(rng.randint(1, n - 1)), "(BODY.PEEK[])")
        elif r < 0.7:
            c.uid("SEARCH", None, "UNSEEN")
        elif r < 0.85:
            c.store(str(rng.randint(1, n - 1)), rng.choice(["+FLAGS", "-FLAGS"]), "(\\Answered)")
        elif r < 0.95:
            c.noop()
        else:
            c.status(a.mailbox, "(MESSAGES UNSEEN UIDNEXT)")
        latencies.append(time.perf_counter() - t0)
    c.logout()
    q.put(latencies)


def run_mixed(a) -> tuple[float, float, float]:
    """(ops/s, median latency s, 90th percentile latency s) of the mixed load."""
    q = mp.Queue()
    procs = [mp.Process(target=mixed_worker, args=(a, i, q)) for i in range(a.clients)]
    for p in procs:
        p.start()
    latencies = sorted(t for _ in procs for t in q.get(timeout=a.duration + 120))
    for p in procs:
        p.join()
    p90 = latencies[int(len(latencies) * 0.9)]
    return len(latencies) / a.duration, statistics.median(latencies), p90


def hold_idle(a) -> tuple[float, float | None]:
    """Open --idle connections, each LOGIN+SELECT+IDLE; returns (seconds, server RSS MB)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.idle + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    socks = []
    drained = 0
    t0 = time.perf_counter()
    for i in range(a.idle):
        s = socket.create_connection((a.host, a.port), timeout=60)
        s.sendall(
            f'a LOGIN "{a.user}" "{a.password}"\r\nb SELECT {a.mailbox}\r\nc IDLE\r\n'.encode()
        )
        socks.append(s)
        if len(socks) - drained >= 50 or i == a.idle - 1:
            for t in socks[drained:]:
                buf = b""
                while b"+ " not in buf:
                    chunk = t.recv(65536)
                    if not chunk:
                        raise SystemExit(f"IDLE connection {i} closed: {buf[-200:]!r}")
                    buf += chunk
            drained = len(socks)
    dt = time.perf_counter() - t0
    time.sleep(1)
    rss = peak_rss_mb(a.pid, "VmRSS:")
    for s in socks:
        try:
            s.sendall(b"DONE\r\nd LOGOUT\r\n")
            s.close()
        except OSError:
            pass
    return dt, rss


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, help="measure the server on this loopback port instead")
    ap.add_argument("--pid", type=int, help="server process for RSS when --port is given")
    ap.add_argument("--user", default="bench@example.test")
    ap.add_argument("--password", default="pass")
    ap.add_argument("--mailbox", default="INBOX")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--idle", type=int, default=0, help="IDLE connections to hold (0: skip)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--fill", action="store_true", help="own server: write the messages into the Maildir"
    )
    ap.add_argument(
        "--reuse", action="store_true", help="keep a mailbox that already holds --messages + 1"
    )
    ap.add_argument(
        "--cpu",
        action="store_true",
        help="also the median server CPU time of each operation (the session's process, "
        "found by its socket; needs the right to read its /proc entries)",
    )
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(Path(a.serve), Path(a.port_file))
        return
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("loopback targets only")
    proc = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-imap-"))
    if a.port is None:
        proc = start_own_server(a, tmp)
    try:
        preload(a)
        results: dict = {}
        for _ in range(max(1, a.repeat)):
            run_sequence(a, results)
        print()
        cpu_head = f" {'server CPU s':>12}" if a.cpu else ""
        print(f"{'operation':<76} {'median s':>10} {'min s':>9}{cpu_head}")
        for name, times in results.items():
            if isinstance(name, tuple):
                continue
            cpu = results.get(("cpu", name))
            cpu_text = f" {statistics.median(cpu):>12.5f}" if cpu else ""
            print(f"{name:<76} {statistics.median(times):>10.4f} {min(times):>9.4f}{cpu_text}")
        if a.clients:
            ops, median, p90 = run_mixed(a)
            print(
                f"{f'mixed load, {a.clients} clients, {a.duration:.0f} s (ops/s)':<76} {ops:>10.1f}"
            )
            print(
                f"{'mixed load latency (median s / 90th percentile s)':<76} {median:>10.4f} {p90:>9.4f}"
            )
        if a.idle:
            dt, rss = hold_idle(a)
            rss_text = f"{rss:.1f} MB RSS" if rss else "RSS n/a"
            print(
                f"{f'{a.idle} IDLE connections opened (s) / server RSS':<76} {dt:>10.2f} {rss_text}"
            )
        peak = peak_rss_mb(a.pid) if getattr(a, "pid", None) else None
        print(f"{'server peak RSS (VmHWM)':<76} {(f'{peak:.1f} MB' if peak else 'n/a'):>10}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
