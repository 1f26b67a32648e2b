#!/usr/bin/env python3
"""Store benchmark: durable delivery rate against the disk's own fsync rate, and folder open times.

Delivers N messages of 2-8 KB through `Mailbox.deliver` from a thread pool (as the server does
with deferToThread) and, for comparison, a smaller batch from a single thread.  It measures, with
the same script on the same disk, the raw rate of "create a small file, write, fsync" (the
floor every durable delivery pays), single-threaded and with the same thread count.  Then it opens
the folder: the first open in a fresh process (builds and saves the index: one stat per file),
a cold open in another fresh process (index file only), and warm opens in the same process.

Targets (issue 2): a 100,000-message folder opens in < 0.3 s warm and < 1.5 s cold; delivery runs
at >= 80% of the disk's fsync-bound rate.

  python3 bench/store.py 100000
  python3 bench/store.py 20000 --threads 4 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu meeting "
    "report invoice schedule release build deploy review budget travel"
).split()


def make_message(rng: random.Random, i: int) -> bytes:
    """A plausible 2-8 KB text message with CRLF line ends, as SMTP hands it to the store."""
    target = rng.randint(2000, 8000)
    lines = [
        f"Message-ID: <{i}.{rng.getrandbits(40):010x}@example.net>",
        "Date: Tue, 14 Nov 2023 22:13:20 +0000",
        f"From: Sender {i % 37} <sender{i % 37}@example.net>",
        "To: Bench <bench@example.test>",
        f"Subject: {' '.join(rng.choice(WORDS) for _ in range(5))} #{i}",
        "",
    ]
    size = sum(len(h) + 2 for h in lines)
    while size < target:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
        lines.append(line)
        size += len(line) + 2
    return ("\r\n".join(lines) + "\r\n").encode()


def messages(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pool = [make_message(rng, i) for i in range(min(n, 512))]
    return [pool[i % len(pool)] for i in range(n)]


# -- the disk's own rate ----------------------------------------------------------------------


def fsync_seconds(
    directory: Path, start: int, count: int, threads: int, rename: bool = False
) -> float:
    """Seconds for `count` times: create a new small file, write 4 KB, fsync, close; with
    `rename`, also rename it into another folder and fsync that folder (the Maildir protocol's
    bare minimum: two fsyncs, so at best half the rate of the plain one)."""
    (directory / "new").mkdir(parents=True, exist_ok=True)
    payload = b"x" * 4096

    def one(i: int) -> None:
        fd = os.open(directory / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if rename:
            os.rename(directory / f"f{i}", directory / "new" / f"f{i}")
            dfd = os.open(directory / "new", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    began = time.perf_counter()
    if threads == 1:
        for i in range(start, start + count):
            one(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(start, start + count)))
    return time.perf_counter() - began


# -- delivery ---------------------------------------------------------------------------------


def make_mailbox(root: Path, address: str):
    from mailsuite.store import Store

    store = Store(root)
    return store.create_mailbox(address)


def deliver_seconds(mbox, msgs: list[bytes], threads: int) -> float:
    start = time.perf_counter()
    if threads == 1:
        for m in msgs:
            mbox.deliver(m)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(mbox.deliver, msgs, chunksize=16))
    return time.perf_counter() - start


def interleaved(work: Path, mbox, msgs: list[bytes], fsync_files: int, threads: int, rounds: int):
    """(raw fsync rate, raw fsync+rename+fsync rate, delivery rate), measured in alternating
    slices so that all see the same disk weather (other processes on a shared disk make each
    vary by 3x over minutes)."""
    raw_s = proto_s = dlv_s = 0.0
    raw_n = 0
    per_round = max(1, fsync_files // rounds)
    step = -(-len(msgs) // rounds)
    for r in range(rounds):
        raw_s += fsync_seconds(work / f"fsync{threads}", raw_n, per_round, threads)
        proto_s += fsync_seconds(work / f"proto{threads}", raw_n, per_round, threads, True)
        raw_n += per_round
        dlv_s += deliver_seconds(mbox, msgs[r * step : (r + 1) * step], threads)
    shutil.rmtree(work / f"fsync{threads}", ignore_errors=True)
    shutil.rmtree(work / f"proto{threads}", ignore_errors=True)
    return raw_n / raw_s, raw_n / proto_s, len(msgs) / dlv_s


# -- opening ------------------------------------------------------------------------------------

OPEN_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3])
t0 = time.perf_counter()
from mailsuite.store.maildir import Mailbox
t1 = time.perf_counter()
c1 = time.process_time()
from pathlib import Path
mbox = Mailbox(sys.argv[2], Path(sys.argv[1]))
f = mbox.folder("INBOX")
t2 = time.perf_counter()
c2 = time.process_time()
n = len(f.messages)
f.save_index()
t3 = time.perf_counter()
warm = []
warm_cpu = []
for _ in range(5):
    t = time.perf_counter()
    c = time.process_time()
    g = Mailbox(sys.argv[2], Path(sys.argv[1])).folder("INBOX")
    warm.append(time.perf_counter() - t)
    warm_cpu.append(time.process_time() - c)
    assert len(g.messages) == n
t = time.perf_counter()
for _ in range(20):
    f.refresh()
refresh = (time.perf_counter() - t) / 20
# What an in-process delivery costs the reactor: the notify_delivery path (a forced refresh).
after_delivery = first_after = after_cpu = 0.0
if sys.argv[4] == "probe":
    times = []
    for i in range(4):
        mbox.deliver(b"Subject: one more\r\n\r\nbody\r\n")
        t = time.perf_counter()
        c = time.process_time()
        f.refresh(force=True)
        times.append((time.perf_counter() - t, time.process_time() - c))
        assert len(f.messages) == n + 1 + i
    first_after = times[0][0]  # also builds the per-folder name sets
    after_delivery, after_cpu = min(times[1:])
print(json.dumps({"open": t2 - t1, "save": t3 - t2, "import": t1 - t0, "messages": n,
                  "warm": min(warm), "refresh": refresh, "after_delivery": after_delivery,
                  "first_after": first_after, "after_cpu": after_cpu,
                  "open_cpu": c2 - c1, "warm_cpu": min(warm_cpu)}))
"""


def open_in_child(path: Path, address: str, probe: bool = False) -> dict:
    repo = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", OPEN_CHILD, str(path), address, repo, "probe" if probe else "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def wait_for_stable_dirs() -> None:
    # The index cannot trust a directory mtime younger than the file system's tick (folder.py
    # MTIME_SLACK_NS); a real folder is opened long after its last delivery.
    from mailsuite.store.folder import MTIME_SLACK_NS

    time.sleep(MTIME_SLACK_NS / 1e9 + 0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("n", type=int, help="messages to deliver (e.g. 100000)")
    p.add_argument("--threads", type=int, default=8, help="delivery threads (default 8)")
    p.add_argument(
        "--single", type=int, default=0, help="messages for the single-thread figure (default N/10)"
    )
    p.add_argument(
        "--fsync-files", type=int, default=0, help="files for the raw fsync rate (default N/5)"
    )
    p.add_argument("--rounds", type=int, default=20, help="alternations of raw and delivery")
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the temporary data goes")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    single_n = args.single or max(100, args.n // 10)
    fsync_files = args.fsync_files or max(500, args.n // 5)

    work = Path(tempfile.mkdtemp(prefix="mailsuite-bench-", dir=args.dir))
    rows: list[tuple[str, str]] = []
    try:
        single = make_mailbox(work / "mail", "single@example.test")
        raw1, proto1, rate1 = interleaved(
            work, single, messages(single_n, 1), fsync_files // 4, 1, args.rounds
        )
        rows.append(("raw create+write+fsync, 1 thread", f"{raw1:,.0f} /s"))
        rows.append(("raw + rename + fsync folder, 1 thread", f"{proto1:,.0f} /s"))
        rows.append(
            (
                f"deliver {single_n:,}, 1 thread",
                f"{rate1:,.0f} /s ({rate1 / raw1:.0%} of raw, {rate1 / proto1:.0%} of raw+rename)",
            )
        )

        mbox = make_mailbox(work / "mail", "bench@example.test")
        msgs = messages(args.n, 2)
        rawt, protot, ratet = interleaved(work, mbox, msgs, fsync_files, args.threads, args.rounds)
        rows.append((f"raw create+write+fsync, {args.threads} threads", f"{rawt:,.0f} /s"))
        rows.append((f"raw + rename + fsync folder, {args.threads} threads", f"{protot:,.0f} /s"))
        rows.append(
            (
                f"deliver {args.n:,}, {args.threads} threads",
                f"{ratet:,.0f} /s ({ratet / rawt:.0%} of raw, {ratet / protot:.0%} of raw+rename)",
            )
        )
        del msgs

        wait_for_stable_dirs()
        first = open_in_child(mbox.path, mbox.address)
        rows.append(
            (
                f"first open, new process (index built, {first['messages']:,} msgs)",
                f"{first['open']:.3f} s",
            )
        )
        rows.append(("save index", f"{first['save']:.3f} s"))
        cold = open_in_child(mbox.path, mbox.address, probe=True)
        # CPU seconds beside the wall clock: on a shared machine the wall clock also counts
        # the time other processes held the CPU.
        rows.append(
            (
                "cold open, new process (persisted index)",
                f"{cold['open']:.3f} s (CPU {cold['open_cpu']:.3f} s)",
            )
        )
        rows.append(
            (
                "warm open, same process (new Folder)",
                f"{cold['warm']:.3f} s (CPU {cold['warm_cpu']:.3f} s)",
            )
        )
        rows.append(
            ("refresh of an open folder, nothing changed", f"{cold['refresh'] * 1e3:.2f} ms")
        )
        rows.append(
            (
                "refresh after one new delivery",
                f"{cold['after_delivery'] * 1e3:.0f} ms (CPU {cold['after_cpu'] * 1e3:.0f} ms;"
                f" first one {cold['first_after'] * 1e3:.0f} ms)",
            )
        )
        if cold["messages"] != args.n:
            rows.append(("ERROR", f"indexed {cold['messages']} of {args.n} messages"))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    print(f"{'-' * width}  {'-' * 24}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\n(data under {work}{', kept' if args.keep else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
