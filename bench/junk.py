"""The junk filter's cost: classification time per message, and SMTP delivered msg/s with the
filter on vs off.

Classification runs `JunkFilter.judge` (tokenizing, the recipient's word counts from SQLite,
combining, the verdict) on messages of --size bytes against a filter trained on --train junk
and as many legitimate messages, as delivery calls it.  Throughput starts `mailsuite serve`
twice (filter on, trained; filter off) and sends --messages messages of the same size,
one connection each, --concurrency at a time.

    python bench/junk.py --messages 1000 --concurrency 10 --size 10240 --repeat 5

It also prints the server's CPU time per delivered message (steadier than msg/s on a shared
machine).  Making a corpus message costs the sender more CPU than the server spends on it:
--pregenerate makes them all before the runs, so that the server, not the sender, is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import smtp as smtp_bench  # noqa: E402  (bench/smtp.py: users, load, Maildir counting)

from mailsuite.config import config_from_dict, load_config  # noqa: E402
from mailsuite.delivery import Envelope, Recipient  # noqa: E402
from mailsuite.junk.model import HAM, JUNK, STAT_TRUSTED_AFTER, message_identity  # noqa: E402
from mailsuite.junk.tokens import message_tokens  # noqa: E402
from mailsuite.services import Services  # noqa: E402
from tests.junk.corpus import make_message  # noqa: E402

CONFIG_EXTRA = """
[junk]
enabled = {enabled}
"""


def train(services: Services, address: str, count: int) -> None:
    data = services.junk.model(services.store.mailbox(address))
    for n in range(count):
        for kind, label in ((JUNK, "junk"), (HAM, "ham")):
            raw = make_message(label, n, seed=99)
            data.learn(message_identity(raw), message_tokens(raw), kind)


def classification(size: int, train_count: int, rounds: int) -> tuple[float, float, int]:
    """(ms per message, share of junk filed as junk, bytes per message)."""
    with tempfile.TemporaryDirectory(prefix="bench-junk-") as tmp:
        config = config_from_dict(
            {"data_dir": str(Path(tmp) / "data"), "allow_root": True}, base=Path(tmp)
        )
        services = Services.create(config, with_tls=False)
        address = "user1@example.test"
        services.accounts.add_user(address, "bench-password")
        services.store.create_mailbox(address)
        train(services, address, train_count)
        time.sleep(STAT_TRUSTED_AFTER)  # as start() does: the filter between lessons
        messages = [make_message(("junk", "ham")[n % 2], n, seed=7, size=size) for n in range(50)]
        envelope = Envelope("x@example.org", [Recipient(address)], client_ip="192.0.2.1")
        for raw in messages[:5]:
            services.junk.judge(envelope, raw, [address])  # warm the caches
        caught = 0
        start = time.perf_counter()
        for r in range(rounds):
            for n, raw in enumerate(messages):
                verdict = services.junk.judge(envelope, raw, [address])[address]
                if r == 0 and n % 2 == 0 and verdict.junk:
                    caught += 1
        elapsed = time.perf_counter() - start
        services.junk.close()
        per = elapsed / (rounds * len(messages)) * 1000
        return per, caught / 25, sum(map(len, messages)) // len(messages)


def start(workdir: Path, users: int, enabled: bool, train_count: int):
    port = smtp_bench.free_port()
    conf = workdir / "mailsuite.toml"
    text = smtp_bench.CONFIG.format(port=port, log=workdir / "server.log", metrics="")
    conf.write_text(text + CONFIG_EXTRA.format(enabled="true" if enabled else "false"))
    smtp_bench.make_users(conf, users)
    trained = time.monotonic()
    if enabled:
        services = Services.create(load_config(conf), with_tls=False)
        for i in range(1, users + 1):
            train(services, f"user{i}@example.test", train_count)
        services.junk.close()
        trained = time.monotonic()
    proc = smtp_bench.serve(conf, workdir, port)
    # A filter file changed in the last STAT_TRUSTED_AFTER seconds is checked through SQLite
    # at each delivery, not by its stat alone: measure the filter as it runs between lessons.
    time.sleep(max(0.0, trained + STAT_TRUSTED_AFTER - time.monotonic()))
    return proc, port


def message(seq: int, size: int) -> bytes:
    """Message `seq` as sent: junk and legitimate in turn, dot-stuffed."""
    raw = make_message(("junk", "ham")[seq % 2], seq, seed=5, size=size)
    return raw.replace(b"\r\n.", b"\r\n..")  # RFC 5321 §4.5.2 dot-stuffing


async def load(
    port: int, n: int, concurrency: int, size: int, users: int, made: list[bytes] | None = None
) -> int:
    """Send n messages; `made`: the messages, made before (else each is made as it is sent)."""
    todo = list(range(n))
    errors = 0

    async def worker():
        nonlocal errors
        while todo:
            seq = todo.pop()
            rcpt = f"user{seq % users + 1}@example.test"
            raw = made[seq] if made is not None else message(seq, size)
            try:
                await smtp_bench.send_one("127.0.0.1", port, rcpt, raw)
            except (OSError, RuntimeError) as e:
                errors += 1
                print(f"message {seq}: {e}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(enabled: bool, args, made: list[bytes] | None) -> tuple[float, float]:
    """(delivered msg/s, the server's CPU milliseconds per delivered message)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-junk-smtp-"))
    proc = None
    try:
        proc, port = start(workdir, args.users, enabled, args.train)
        dirs = smtp_bench.maildirs(str(workdir / "data/mail/example.test/{user}"), args.users)
        # Junk is a folder of its own: count it too.
        dirs += [d.parent / ".Junk" / d.name for d in list(dirs)]
        cpu = cpu_seconds(proc.pid)
        begin = time.perf_counter()
        errors = asyncio.run(
            load(port, args.messages, args.concurrency, args.size, args.users, made)
        )
        rate = smtp_bench.delivered_rate(dirs, args.messages - errors, begin)
        delivered = smtp_bench.count(dirs)
        return rate, (cpu_seconds(proc.pid) - cpu) * 1000 / max(delivered, 1)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--size", type=int, default=10240, help="bytes per message")
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--train", type=int, default=200, help="junk and legitimate lessons each")
    ap.add_argument("--rounds", type=int, default=20, help="classification passes over 50")
    ap.add_argument("--repeat", type=int, default=1, help="off/on pairs, taking turns (medians)")
    ap.add_argument(
        "--pregenerate",
        action="store_true",
        help="make the messages before sending (making one costs the sender about 2.4 ms of"
        " CPU, on the same machine as the server: without this the sender may be what limits)",
    )
    args = ap.parse_args()

    per, caught, avg = classification(args.size, args.train, args.rounds)
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| classification per message ({avg} bytes) | {per:.2f} ms | < 2 ms |")
    print(f"| held-out junk filed as junk | {caught:.0%} | |")
    # Off and on take turns, so that a load from elsewhere on the machine weighs on both.
    made = [message(seq, args.size) for seq in range(args.messages)] if args.pregenerate else None
    offs, ons, off_cpu, on_cpu = [], [], [], []
    for _ in range(args.repeat):
        for rates, cpus, enabled in ((offs, off_cpu, False), (ons, on_cpu, True)):
            rate, cpu = throughput(enabled, args, made)
            rates.append(rate)
            cpus.append(cpu)
    if args.repeat > 1:
        print(f"| runs, off | {' '.join(f'{r:.0f}' for r in offs)} | |")
        print(f"| runs, on | {' '.join(f'{r:.0f}' for r in ons)} | |")
        print(f"| server CPU ms per message, off | {' '.join(f'{c:.2f}' for c in off_cpu)} | |")
        print(f"| server CPU ms per message, on | {' '.join(f'{c:.2f}' for c in on_cpu)} | |")
        changes = sorted((b - a) / a for a, b in zip(offs, ons, strict=True))
        print(f"| change per pair | {' '.join(f'{c:+.0%}' for c in changes)} | |")
    off, on = statistics.median(offs), statistics.median(ons)
    print(f"| SMTP delivered msg/s, filter off (median) | {off:.1f} | |")
    print(f"| SMTP delivered msg/s, filter on (median) | {on:.1f} | >= {0.85 * off:.1f} (-15 %) |")
    print(f"| change | {(on - off) / off:+.1%} | |")
    cpu_off, cpu_on = statistics.median(off_cpu), statistics.median(on_cpu)
    print(f"| server CPU ms per message, off (median) | {cpu_off:.2f} | |")
    print(f"| server CPU ms per message, on (median) | {cpu_on:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
