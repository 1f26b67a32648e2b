#!/usr/bin/env python3
"""Outbound relay throughput: submit N messages for remote recipients, measure until all are
delivered to a local sink (messages/s), for mailsuite and, with --postfix, for a private
Postfix instance given the same sink and the same load.

The sink is Postfix's smtp-sink (C, answers 250 to everything) on a free loopback port. The load
is C client threads (smtplib), each with one session sending its share of the N messages; the
clock starts at the first connection and "delivered" stops when the server's queue is empty
(mailsuite: <queue>/entries/ empty; Postfix: no file left in maildrop/incoming/active/deferred).
mailsuite takes the messages on its submission listener with AUTH PLAIN (auth.plaintext =
"loopback", no TLS); Postfix on its smtpd with permit_mynetworks (no AUTH: it has no SASL here).
Each run also prints how busy the machine's CPUs were, and for mailsuite the CPU time per
message of the whole server and of its reactor thread alone (the single-core limit).

--maildir gives the sending account its Maildir, as `mailsuite user add` does (without it the
account has none): its junk filter data then notes the people it writes to, as for a real user.

--drain measures the relay alone, without the cost of accepting the mail: the N messages are
queued first and then released at once; the clock runs from the release until the queue is empty.
mailsuite: entries written with the spool API before the server starts, due 5 s after it starts;
Postfix: mail accepted into the hold queue (smtpd_end_of_data_restrictions = static:HOLD), then
`postsuper -H ALL` + `postqueue -f` (the clock includes those two commands).

Usage: bench/relay.py [-n 2000] [--clients 4] [--size 2048] [--runs 3] [--postfix] [--drain]
                      [--maildir]
Needs root for --postfix (a private instance in $TMPDIR/relaybench/postfix, port 12625; the shared
peer instance of ../shared/peers is not touched).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Under TMPDIR (see bench/smtp.py: a folder of its own keeps rounds from paying for the inodes
# earlier rounds freed).
BASE = Path(tempfile.gettempdir()) / "relaybench"
PEER_CONF = Path("/tmp/peers/postfix-conf")
POSTFIX_PORT = 12625


def machine_busy() -> float:
    """CPU seconds all CPUs have spent not idle (nor waiting for I/O) since boot."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        ["smtp-sink", "-u", "nobody", "-4", f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


def message(i: int, size: int) -> bytes:
    head = (
        f"From: bench@example.test\r\nTo: user{i % 40}@remote.test\r\n"
        f"Subject: relay bench {i}\r\nMessage-ID: <{i}.{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode()
    line = b"x" * 70 + b"\r\n"
    return head + line * max(1, size // len(line))


def load(port: int, n: int, clients: int, size: int, login: tuple[str, str] | None) -> float:
    """Send n messages over `clients` sessions; returns the wall time of sending."""
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as c:
                if login:
                    c.login(*login)
                for i in range(k, n, clients):
                    c.sendmail(
                        "bench@example.test", [f"user{i % 40}@remote.test"], message(i, size)
                    )
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"load failed: {errors[0]!r}")
    return time.monotonic() - t0


def wait_drained(count, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count() and time.monotonic() < deadline:
        time.sleep(0.005)
    if count():
        raise SystemExit("queue did not drain in time")


# -- mailsuite ---------------------------------------------------------------------------


class Mailsuite:
    name = "mailsuite"
    RELEASE_DELAY = 5.0

    def __init__(
        self, sink_port: int, run: int, drain: int = 0, size: int = 0, maildir: bool = False
    ):
        self.root = BASE / f"mailsuite-{run}"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.port = free_port()
        sys.path.insert(0, str(REPO))
        from mailsuite.config import ListenConfig

        # Every other listener kind closed, whatever kinds there are.
        empty = "\n".join(
            f"{f.name} = []" for f in dataclasses.fields(ListenConfig) if f.name != "submission"
        )
        (self.root / "mailsuite.toml").write_text(
            f"""hostname = "mail.example.test"
domains = ["example.test"]
data_dir = "data"
allow_root = true
[listen]
submission = ["127.0.0.1:{self.port}"]
{empty}
[auth]
plaintext = "loopback"
[log]
file = "{self.root / "mailsuite.log"}"
[relay]
routes = {{ "remote.test" = "127.0.0.1:{sink_port}" }}
"""
        )
        from mailsuite.accounts.db import Accounts

        (self.root / "data").mkdir()
        Accounts(self.root / "data" / "accounts.sqlite", ["example.test"]).add_user(
            "bench@example.test", "benchpass"
        )
        if maildir:
            from mailsuite.config import load_config
            from mailsuite.store import Store

            config = load_config(self.root / "mailsuite.toml")
            Store(config.mail_dir).create_mailbox("bench@example.test")
        self.queue_entries = self.root / "data" / "queue" / "entries"
        self.release_at = None
        if drain:
            from mailsuite.spool.queue import Queue

            queue = Queue(self.root / "data" / "queue")
            # Leave time for writing the entries (about 1 ms each) and for the server to start.
            self.release_at = time.time() + self.RELEASE_DELAY + drain * 0.003
            for i in range(drain):
                queue.enqueue(
                    "bench@example.test",
                    [f"user{i % 40}@remote.test"],
                    message(i, size),
                    next_attempt=self.release_at,
                )
        profile = os.environ.get("RELAYBENCH_PROFILE")
        prefix = ["-m", "cProfile", "-o", profile] if profile else []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *prefix,
                "-m",
                "mailsuite.cli",
                "--config",
                str(self.root / "mailsuite.toml"),
                "serve",
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        self.login = ("bench@example.test", "benchpass")

    def queued(self) -> int:
        try:
            return len(os.listdir(self.queue_entries))
        except FileNotFoundError:
            return 0

    def release(self) -> float:
        """Wait for the moment the queued entries fall due; returns it (monotonic clock)."""
        wait = self.release_at - time.time()
        if wait < 0.5:
            raise SystemExit("server start took longer than the release delay")
        time.sleep(wait)
        return time.monotonic()

    def cpu(self) -> tuple[float, float]:
        """CPU seconds the server has used so far: all its threads,
        and its main (reactor) thread alone."""
        pid = self.proc.pid
        out = []
        for path in (f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"):
            with open(path) as f:
                fields = f.read().rpartition(")")[2].split()
            out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        return out[0], out[1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


# -- Postfix -----------------------------------------------------------------------------


class Postfix:
    name = "postfix"
    QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")

    def __init__(
        self, sink_port: int, run: int, drain: int = 0, size: int = 0, maildir: bool = False
    ):
        if not PEER_CONF.is_dir():
            raise SystemExit(f"{PEER_CONF} missing: run ../shared/peers/setup.sh first")
        self.root = BASE / "postfix"
        self.conf = self.root / "conf"
        self.spool = self.root / "spool"
        if not (self.spool / "pid").is_dir():
            shutil.rmtree(self.root, ignore_errors=True)
        for d in (self.conf, self.spool, self.root / "data", self.root / "log"):
            d.mkdir(parents=True, exist_ok=True)
        main = (PEER_CONF / "main.cf").read_text()
        main = main.replace("/tmp/peers/postfix-spool", str(self.spool))
        main = main.replace("/tmp/peers/postfix-data", str(self.root / "data"))
        main = main.replace("/tmp/peers/log", str(self.root / "log"))
        main = main.replace("/tmp/peers/postfix-conf", str(self.conf))
        main += (
            f"\ntransport_maps = texthash:{self.conf}/transport\nsmtp_tls_security_level = may\n"
        )
        if drain:
            main += "smtpd_end_of_data_restrictions = check_client_access static:HOLD\n"
        (self.conf / "main.cf").write_text(main)
        master = (
            (PEER_CONF / "master.cf")
            .read_text()
            .replace("127.0.0.1:12025 inet", f"127.0.0.1:{POSTFIX_PORT} inet")
        )
        (self.conf / "master.cf").write_text(master)
        (self.conf / "transport").write_text(f"remote.test smtp:[127.0.0.1]:{sink_port}\n")
        shutil.copy(PEER_CONF / "vmailbox", self.conf / "vmailbox")
        shutil.chown(self.root / "data", "postfix", "postfix")
        subprocess.run(["postfix", "-c", str(self.conf), "check"], check=True)
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True)
        # Leftovers of an interrupted earlier run would count as undelivered.
        subprocess.run(["postsuper", "-c", str(self.conf), "-d", "ALL"], capture_output=True)
        subprocess.run(["postfix", "-c", str(self.conf), "start"], check=True, capture_output=True)
        wait_port(POSTFIX_PORT)
        self.port = POSTFIX_PORT
        self.login = None
        if drain:
            load(self.port, drain, 4, size, None)
            held = self.root / "spool" / "hold"
            deadline = time.monotonic() + 60
            while sum(len(f) for _, _, f in os.walk(held)) < drain:
                if time.monotonic() > deadline:
                    raise SystemExit("postfix did not hold the messages")
                time.sleep(0.05)

    def release(self) -> float:
        t0 = time.monotonic()
        subprocess.run(
            ["postsuper", "-c", str(self.conf), "-H", "ALL"], check=True, capture_output=True
        )
        subprocess.run(["postqueue", "-c", str(self.conf), "-f"], check=True)
        return t0

    def queued(self) -> int:
        n = 0
        for q in self.QUEUES:
            for _, _, files in os.walk(self.spool / q):
                n += len(files)
        return n

    def stop(self) -> None:
        subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True)


def print_cpu(name: str, n: int, before: tuple[float, float], after: tuple[float, float]) -> None:
    (all0, main0), (all1, main1) = before, after
    print(
        f"    {name} CPU per message: {(all1 - all0) / n * 1e3:.3f} ms, "
        f"of which the reactor thread {(main1 - main0) / n * 1e3:.3f} ms",
        flush=True,
    )


def drain_run(kind, n: int, size: int, run: int) -> float:
    sink, sink_port = start_sink()
    server = kind(sink_port, run, drain=n, size=size)
    try:
        t0 = server.release()
        cpu = getattr(server, "cpu", None)
        cpu0 = cpu() if cpu else (0.0, 0.0)
        wait_drained(server.queued)
        total = time.monotonic() - t0
        if cpu:
            print_cpu(server.name, n, cpu0, cpu())
    finally:
        server.stop()
        sink.terminate()
        sink.wait()
    return n / total


def one_run(
    kind, n: int, clients: int, size: int, run: int, maildir: bool = False
) -> tuple[float, float]:
    sink, sink_port = start_sink()
    server = kind(sink_port, run, maildir=maildir)
    try:
        time.sleep(0.5)  # let the server settle (runner scan, postfix daemons)
        cpu = getattr(server, "cpu", None)
        cpu0 = cpu() if cpu else (0.0, 0.0)
        busy0 = machine_busy()
        t0 = time.monotonic()
        send = load(server.port, n, clients, size, server.login)
        wait_drained(server.queued)
        total = time.monotonic() - t0
        busy = (machine_busy() - busy0) / total / os.cpu_count() * 100
        print(f"    {server.name}: the machine's CPUs {busy:.0f} % busy during the run", flush=True)
        if cpu:
            print_cpu(server.name, n, cpu0, cpu())
    finally:
        server.stop()
        sink.terminate()
        sink.wait()
    return n / send, n / total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=2000, help="messages per run")
    p.add_argument("--clients", type=int, default=4, help="parallel submission sessions")
    p.add_argument("--size", type=int, default=2048, help="approximate body bytes")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--postfix", action="store_true", help="also run the Postfix peer, interleaved")
    p.add_argument("--drain", action="store_true", help="relay only: queue first, then release")
    p.add_argument(
        "--maildir", action="store_true", help="the sending account has its Maildir (mailsuite)"
    )
    args = p.parse_args()
    kinds = [Mailsuite] + ([Postfix] if args.postfix else [])
    if args.drain:
        drained: dict[str, list[float]] = {k.name: [] for k in kinds}
        for run in range(args.runs):
            for kind in kinds:
                rate = drain_run(kind, args.n, args.size, run)
                drained[kind.name].append(rate)
                print(f"run {run + 1} {kind.name:<10} drained {rate:8.1f} msg/s", flush=True)
        print(f"\nN={args.n} size={args.size} runs={args.runs} (queue drain: relay only)")
        print("| server | delivered msg/s (median) | runs |")
        print("|---|---|---|")
        for name, rates in drained.items():
            runs = ", ".join(f"{r:.1f}" for r in rates)
            print(f"| {name} | {statistics.median(rates):.1f} | {runs} |")
        return 0
    results: dict[str, list[tuple[float, float]]] = {k.name: [] for k in kinds}
    for run in range(args.runs):
        for kind in kinds:
            acc, dlv = one_run(kind, args.n, args.clients, args.size, run, args.maildir)
            results[kind.name].append((acc, dlv))
            print(
                f"run {run + 1} {kind.name:<10} accepted {acc:8.1f} msg/s   "
                f"delivered {dlv:8.1f} msg/s",
                flush=True,
            )
    print()
    maildir = " maildir" if args.maildir else ""
    print(f"N={args.n} clients={args.clients} size={args.size} runs={args.runs}{maildir}")
    print("| server | accepted msg/s (median) | delivered msg/s (median) | runs delivered |")
    print("|---|---|---|---|")
    for name, rs in results.items():
        acc = statistics.median(r[0] for r in rs)
        dlv = statistics.median(r[1] for r in rs)
        runs = ", ".join(f"{r[1]:.1f}" for r in rs)
        print(f"| {name} | {acc:.1f} | {dlv:.1f} | {runs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
