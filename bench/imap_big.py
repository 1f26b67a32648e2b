#!/usr/bin/env python3
"""FETCH of one big message, interleaved between servers: wall time, server CPU and client
CPU per operation.

Each --root is a mailsuite source tree started as its own server (bench/imap.py's server) on a
fresh data folder holding one message of --size MB, stored as a delivery agent stores it (LF
line ends, `,S=`/`,W=` in the name).  --peer adds a running server (the Dovecot peer of
../shared/peers): the `imap` processes that appear when the benchmark logs in are the ones
whose CPU is counted.  Rounds of --ops FETCHes go to each target in turn, so a busy machine
slows every target alike; the table gives the median and the fastest round.

  python3 bench/imap_big.py --root /work/main --root . --size 1 --size 20
  python3 bench/imap_big.py --root . --peer 127.0.0.1:12143:user45@example.test:pass:INBOX:5001
"""

from __future__ import annotations

import argparse
import imaplib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER, PASSWORD = "bench@example.test", "pass"


def big_message(megabytes: float) -> bytes:
    """The same shape as bench/imap.py's 1 MB message, scaled."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    head = b"From: big@example.org\r\nTo: bench@example.test\r\nSubject: big one\r\n\r\n"
    return head + line * int(megabytes * 1024 * 1024 // len(line))


def start_server(root: Path, megabytes: float, tmp: Path) -> tuple[subprocess.Popen, int]:
    """bench/imap.py --serve from `root`, its INBOX holding one message."""
    data = tmp / "data"
    (data / "mail").mkdir(parents=True)
    setup = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1])\n"
        "from mailsuite.accounts.db import Accounts\n"
        "from mailsuite.store import Store\n"
        "data = Path(sys.argv[2])\n"
        "Accounts(data / 'accounts.sqlite', ['example.test']).add_user(sys.argv[3], sys.argv[4])\n"
        "store = Store(data / 'mail'); store.create_mailbox(sys.argv[3])\n"
        "print(store.path_for(sys.argv[3]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(root))
    maildir = subprocess.run(
        [sys.executable, "-c", setup, str(root), str(data), USER, PASSWORD],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    msg = big_message(megabytes)
    lf = msg.replace(b"\r\n", b"\n")
    name = f"1700000000.M1P1Q1.bench,S={len(lf)},W={len(msg)}:2,S"
    (Path(maildir) / "cur" / name).write_bytes(lf)
    port_file = tmp / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(root / "bench" / "imap.py"),
            "--serve",
            str(data),
            "--port-file",
            str(port_file),
        ],
        cwd=root,
        env=env,
    )
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server from {root} did not start")
        time.sleep(0.05)
    return proc, int(port_file.read_text())


def imap_pids() -> set[str]:
    out = subprocess.run(["pgrep", "-x", "imap"], capture_output=True, text=True).stdout
    return set(out.split())


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Target:
    def __init__(self, name: str, client: imaplib.IMAP4, number: int, pids: list[int]):
        self.name, self.client, self.number, self.pids = name, client, number, pids
        self.walls: list[float] = []
        self.server_cpu = self.client_cpu = 0.0
        self.ops = 0
        typ, data = client.fetch(str(number), "(BODY.PEEK[])")
        if typ != "OK":
            raise SystemExit(f"{name}: FETCH failed: {data!r}")
        self.size = len(data[0][1])

    def round(self, ops: int) -> None:
        s0, c0, t0 = cpu_seconds(self.pids), own_cpu(), time.perf_counter()
        for _ in range(ops):
            self.client.fetch(str(self.number), "(BODY.PEEK[])")
        self.walls.append((time.perf_counter() - t0) / ops)
        self.server_cpu += cpu_seconds(self.pids) - s0
        self.client_cpu += own_cpu() - c0
        self.ops += ops


def measure(a, megabytes: float) -> list[Target]:
    procs, tmps, targets = [], [], []
    try:
        for root in a.root:
            tmp = Path(tempfile.mkdtemp(prefix="bench-imap-big-"))
            tmps.append(tmp)
            proc, port = start_server(Path(root).resolve(), megabytes, tmp)
            procs.append(proc)
            c = imaplib.IMAP4("127.0.0.1", port, timeout=300)
            c.login(USER, PASSWORD)
            c.select("INBOX")
            targets.append(Target(Path(root).resolve().name, c, 1, [proc.pid]))
        for peer in a.peer:
            host, port, user, password, mailbox, number = peer.split(":")
            before = imap_pids()
            c = imaplib.IMAP4(host, int(port), timeout=300)
            c.login(user, password)
            pids = [int(p) for p in imap_pids() - before]
            c.select(mailbox)
            targets.append(Target(f"{host}:{port}", c, int(number), pids))
        for _ in range(a.repeat):
            for t in targets:
                t.round(a.ops)
        for t in targets:
            t.client.logout()
        return targets
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--root", action="append", default=[], help="a mailsuite source tree")
    ap.add_argument(
        "--peer", action="append", default=[], help="host:port:user:password:mailbox:number"
    )
    ap.add_argument("--size", action="append", type=float, help="MB (repeatable; default 1)")
    ap.add_argument("--repeat", type=int, default=20, help="rounds per target")
    ap.add_argument("--ops", type=int, default=10, help="FETCHes per round")
    a = ap.parse_args()
    if not a.root and not a.peer:
        a.root = [str(Path(__file__).resolve().parent.parent)]
    print(
        f"{'target':<24} {'literal B':>10} {'wall ms median':>15} {'wall ms min':>12} "
        f"{'server CPU ms':>14} {'client CPU ms':>14}"
    )
    for megabytes in a.size or [1.0]:
        for t in measure(a, megabytes):
            print(
                f"{t.name:<24} {t.size:>10} {statistics.median(t.walls) * 1000:>15.3f} "
                f"{min(t.walls) * 1000:>12.3f} {t.server_cpu / t.ops * 1000:>14.3f} "
                f"{t.client_cpu / t.ops * 1000:>14.3f}"
            )


if __name__ == "__main__":
    main()
