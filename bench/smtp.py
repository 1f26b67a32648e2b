"""SMTP inbound throughput: messages/s accepted and delivered into the Maildirs, server peak RSS.

Starts `mailsuite serve` in a subprocess on a scratch data folder (or targets a running server
with --target, e.g. the Postfix peer on 127.0.0.1:12025), then sends --messages messages of
--size payload bytes with --concurrency parallel sessions, one connection per message like
Postfix's smtp-source (EHLO, MAIL, RCPT, DATA, QUIT).  "Accepted" is the wall time until the
last 250 after DATA; "delivered" until the last file is in new/ or cur/ (for mailsuite, 250
already means fsynced, so the two match).

    python bench/smtp.py --messages 2000 --concurrency 10 --size 2048
    python bench/smtp.py --messages 2000 --concurrency 10 --size 2048 --junk off
    python bench/smtp.py --messages 2000 --concurrency 10 --size 2048 \\
        --target 127.0.0.1:12025 --maildir-template '/tmp/peers/mail/example.test/{user}'

The scratch folder is made under $TMPDIR.  On an ext4 file system without a journal, creating
a file skips every inode freed in the last minutes in its folder's block group, one lookup
each: a round run right after others (whose scratch folders were removed in the same group)
spent a third of the server's CPU in the kernel on that (perf: ext4's recently_deleted), and
its CPU per message was up to 45 % above a round in a fresh group.  For figures that compare
trees, give every round a block group of its own, for each tree alike:

    mkdir -p /var/tmp/bench && chattr +T /var/tmp/bench   # subfolders spread over groups
    TMPDIR=/var/tmp/bench python bench/smtp.py ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """\
hostname = "mx.bench.test"
domains = ["example.test"]
data_dir = "data"
allow_root = true

[listen]
smtp = ["127.0.0.1:{port}"]
submission = []
submissions = []
pop3 = []
pop3s = []
imap = []
imaps = []
http = []
managesieve = []
metrics = [{metrics}]

[limits]
connections_total = 1000
connections_per_ip = 1000

[log]
file = "{log}"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_users(conf: Path, users: int) -> None:
    """User accounts through the real Accounts API (argon2: slow, so in parallel threads)."""
    from mailsuite.config import load_config
    from mailsuite.services import Services

    services = Services.create(load_config(conf))

    def add(i: int) -> None:
        address = f"user{i}@example.test"
        services.accounts.add_user(address, "bench-password")
        services.store.create_mailbox(address)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(add, range(1, users + 1)))


def start_server(
    workdir: Path, users: int, metrics: bool = False, junk: bool = True
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / "mailsuite.toml"
    listener = f'"127.0.0.1:{free_port()}"' if metrics else ""
    text = CONFIG.format(port=port, log=workdir / "server.log", metrics=listener)
    if not junk:
        text += "\n[junk]\nenabled = false\n"
    conf.write_text(text)
    make_users(conf, users)
    return serve(conf, workdir, port), port


def serve(conf: Path, workdir: Path, port: int) -> subprocess.Popen:
    """`mailsuite serve` on `conf`, once its SMTP listener on `port` accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "serve"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "server.stderr", "wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                err = (workdir / "server.stderr").read_text()
                raise SystemExit(f"server exited: {err}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def delivered_rate(dirs: list[Path], expected: int, began: float) -> float:
    """Messages per second since `began`, once `expected` files are in `dirs` (or 300 s on)."""
    deadline = time.monotonic() + 300
    while count(dirs) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return count(dirs) / (time.perf_counter() - began)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process and all its threads so far (Linux /proc): the
    server's cost per message, steadier than msg/s on a shared machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def message(size: int, seq: int, rcpt: str) -> bytes:
    head = (
        f"From: bench@example.test\r\nTo: {rcpt}\r\nSubject: bench {seq}\r\n"
        f"Message-ID: <bench.{seq}.{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode()
    line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:76] + b"\r\n"
    body = (line * (size // len(line) + 1))[:size]
    if not body.endswith(b"\r\n"):
        body = body[:-2] + b"\r\n" if len(body) >= 2 else b"\r\n"
    return head + body


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line.startswith(code):
            raise RuntimeError(f"expected {code!r}, got {line!r}")
        if line[3:4] != b"-":
            return


async def send_one(host: str, port: int, rcpt: str, data: bytes) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await expect(reader, b"220")
        writer.write(b"EHLO bench.test\r\n")
        await expect(reader, b"250")
        writer.write(b"MAIL FROM:<bench@example.test>\r\n")
        await expect(reader, b"250")
        writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
        await expect(reader, b"250")
        writer.write(b"DATA\r\n")
        await expect(reader, b"354")
        writer.write(data + b".\r\n")
        await expect(reader, b"250")
        writer.write(b"QUIT\r\n")
        await expect(reader, b"221")
    finally:
        writer.close()


async def run_load(host, port, n, concurrency, size, users) -> tuple[float, int]:
    todo = list(range(n))
    errors = 0
    start = time.perf_counter()

    async def worker():
        nonlocal errors
        while todo:
            seq = todo.pop()
            rcpt = f"user{seq % users + 1}@example.test"
            try:
                await send_one(host, port, rcpt, message(size, seq, rcpt))
            except (OSError, RuntimeError) as e:
                errors += 1
                print(f"message {seq}: {e}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, errors


def maildirs(template: str, users: int) -> list[Path]:
    out = []
    for i in range(1, users + 1):
        base = template.replace("{user}", f"user{i}").replace("{addr}", f"user{i}@example.test")
        out += [Path(base) / "new", Path(base) / "cur"]
    return out


def count(dirs: list[Path]) -> int:
    total = 0
    for d in dirs:
        try:
            total += sum(1 for e in os.scandir(d) if e.is_file())
        except FileNotFoundError:
            pass
    return total


def clean(dirs: list[Path]) -> None:
    for d in dirs:
        if d.is_dir():
            for e in os.scandir(d):
                if e.is_file():
                    os.unlink(e.path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048, help="payload bytes per message")
    ap.add_argument("--users", type=int, default=40, help="recipients user1..userN@example.test")
    ap.add_argument("--target", help="host:port of a running server instead of starting one")
    ap.add_argument("--maildir-template", help="with --target: Maildir path with {user}/{addr}")
    ap.add_argument("--server-pid", type=int, help="with --target: pid whose peak RSS to report")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument(
        "--junk",
        choices=("on", "off"),
        default="on",
        help="the junk filter ([junk] enabled), to tell its cost from the rest",
    )
    ap.add_argument(
        "--metrics", action="store_true", help="with the metrics listener on (counting costs)"
    )
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-smtp-"))
    proc = None
    try:
        if args.target:
            host, _, port_text = args.target.rpartition(":")
            port = int(port_text)
            if not args.maildir_template:
                ap.error("--target needs --maildir-template")
            template = args.maildir_template
            pid = args.server_pid
            label = f"{args.target}"
        else:
            proc, port = start_server(workdir, args.users, args.metrics, args.junk == "on")
            host = "127.0.0.1"
            template = str(workdir / "data" / "mail" / "example.test" / "{user}")
            pid = proc.pid
            label = "mailsuite"
        dirs = maildirs(template, args.users)
        clean(dirs)
        before = count(dirs)
        cpu_before = cpu_seconds(pid) if pid else None
        start = time.perf_counter()
        accept_s, errors = asyncio.run(
            run_load(host, port, args.messages, args.concurrency, args.size, args.users)
        )
        accepted = args.messages - errors
        deadline = time.monotonic() + 300
        while count(dirs) - before < accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        deliver_s = time.perf_counter() - start
        delivered = count(dirs) - before
        rss = f"{peak_rss_kib(pid) / 1024:.1f} MiB" if pid else "n/a"
        cpu = "n/a"
        if cpu_before is not None:
            cpu = f"{(cpu_seconds(pid) - cpu_before) * 1000 / max(delivered, 1):.3f}"
        print(
            "| server | messages | conc | size | accepted | accepted msg/s "
            "| delivered | delivered msg/s | peak RSS | server CPU ms/msg |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        print(
            f"| {label} | {args.messages} | {args.concurrency} | {args.size} | {accepted} "
            f"| {accepted / accept_s:.1f} | {delivered} | {delivered / deliver_s:.1f} | {rss} | {cpu} |"
        )
        return 0 if delivered >= accepted == args.messages else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
