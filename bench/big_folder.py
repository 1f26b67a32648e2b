#!/usr/bin/env python3
"""One client working through a big folder, and what it costs everybody else.

One process serves every user, so a command over a folder of 50,000 messages must not hold
the other clients for its whole length.  Starts `mailsuite serve` (bench/hostile.py's
`Server`: the mailsuite on PYTHONPATH, so PYTHONPATH=/work/base measures the code before a
change) with --messages written into INBOX as another delivery agent would, then runs the
commands a mail client sends on such a folder while new SMTP connections time their greeting
over and over; prints each command's time and the worst greeting seen while it ran (target:
a greeting never waits more than 0.1 s, whatever one client does).

  python3 bench/big_folder.py --messages 50000
"""

from __future__ import annotations

import argparse
import imaplib
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from hostile import PASSWORD, USER, Server, greeting_latency

COMMANDS = [
    ("SELECT INBOX (first open)", lambda c: c.select("INBOX")),
    ("UID FETCH 1:* (FLAGS)", lambda c: c.uid("FETCH", "1:*", "(FLAGS)")),
    (
        "UID STORE 1:* +FLAGS.SILENT (\\Seen)",
        lambda c: c.uid("STORE", "1:*", "+FLAGS.SILENT (\\Seen)"),
    ),
    ("UID STORE 1:* -FLAGS (\\Seen)", lambda c: c.uid("STORE", "1:*", "-FLAGS (\\Seen)")),
    ("SEARCH UNSEEN", lambda c: c.search(None, "UNSEEN")),
    ("SEARCH TEXT", lambda c: c.search(None, "TEXT", "needle")),
    ("FETCH 1:* (ENVELOPE) (first time)", lambda c: c.fetch("1:*", "(ENVELOPE)")),
    ("SORT (SUBJECT)", lambda c: c.sort("(SUBJECT)", "UTF-8", "ALL")),
    ("THREAD REFERENCES", lambda c: c.thread("REFERENCES", "UTF-8", "ALL")),
    ("UID COPY of 40 % to Archive", None),
    ("UID STORE +FLAGS.SILENT (\\Deleted) on 40 %", None),
    ("EXPUNGE of 40 %", lambda c: c.expunge()),
    ("UID MOVE 1:* Archive", lambda c: c.uid("MOVE", "1:*", "Archive")),
]


def fill(root: Path, n: int) -> None:
    local, _, domain = USER.partition("@")
    new = root / "data" / "mail" / domain / local / "new"
    for i in range(n):
        body = (
            f"From: sender{i % 97}@example.net\nTo: {USER}\nSubject: report {i} on things\n"
            f"Message-ID: <{i}@example.net>\nReferences: <{i // 3}@example.net>\n\n"
            f"Body of message {i}.\n"
        ).encode()
        (new / f"{1_700_000_000 + i}.M{i}P1.bench,S={len(body)}").write_bytes(body)


def probe(port: int, log: Path) -> None:
    """Child process (its own GIL: the client's parsing of big answers must not delay it):
    new SMTP connections one after another, each greeting's (end time, wait) appended."""
    with log.open("a") as out:
        while True:
            wait = greeting_latency(port)
            out.write(f"{time.monotonic()} {wait}\n")
            out.flush()
            time.sleep(0.005)


def waits_between(log: Path, start: float, end: float) -> list[float]:
    """The waits of the greetings that were under way at some time in [start, end]."""
    waits = []
    for line in log.read_text().splitlines():
        done, wait = map(float, line.split())
        if done >= start and done - wait <= end:
            waits.append(wait)
    return waits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50_000)
    args = ap.parse_args()
    part = f"1:{args.messages * 2 // 5}"
    with tempfile.TemporaryDirectory(prefix="mailsuite-bigfolder-") as tmp:
        server = Server(Path(tmp), 10)
        try:
            fill(Path(tmp), args.messages)
            log = Path(tmp) / "greetings"
            prober = mp.Process(target=probe, args=(server.ports["smtp"], log), daemon=True)
            prober.start()
            client = imaplib.IMAP4("127.0.0.1", server.ports["imap"], timeout=600)
            client.login(USER, PASSWORD)
            rows = []
            for name, run in COMMANDS:
                if run is None and name.startswith("UID COPY"):
                    run = lambda c: c.uid("COPY", part, "Archive")  # noqa: E731
                elif run is None:
                    run = lambda c: c.uid("STORE", part, "+FLAGS.SILENT (\\Deleted)")  # noqa: E731
                time.sleep(0.1)
                t0 = time.monotonic()
                typ, _ = run(client)
                t1 = time.monotonic()
                time.sleep(0.3)  # the greeting under way when it ended finishes
                waits = waits_between(log, t0, t1)
                rows.append((name, typ, t1 - t0, max(waits, default=0.0), len(waits)))
            prober.terminate()
        finally:
            server.stop()
    width = max(len(r[0]) for r in rows)
    print(f"{args.messages} messages in INBOX")
    print(f"{'command':<{width}}  answer  {'time':>8}  {'worst SMTP greeting meanwhile':>30}")
    for name, typ, took, worst, n in rows:
        print(f"{name:<{width}}  {typ:<6}  {took:7.3f}s  {worst:8.3f}s (of {n} greetings)")
    os._exit(0)


if __name__ == "__main__":
    main()
