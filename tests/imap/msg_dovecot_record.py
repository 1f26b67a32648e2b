#!/usr/bin/env python3
"""Re-record the Dovecot answers behind test_msg_dovecot_parity.py (a developer tool, not a test).

Needs root and Debian's dovecot-core/dovecot-imapd.  It starts a private Dovecot (auth only, no
listeners) under a temporary directory, stores the messages of msg_dovecot_cases.py and
msg_dovecot_sortthread.py in its Maildir, asks `doveadm fetch` and the `imap` process (preauth,
one command at a time) and rewrites the expectation modules next to this file:

    python3 tests/imap/msg_dovecot_record.py [output-dir]

To add a case, add `'name': (raw, b'', b'', b'')` to CASES and run this.  The SEARCH criteria
and FETCH items are the ones already recorded.
"""

from __future__ import annotations

import hashlib
import os
import pprint
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from tests.imap import (  # noqa: E402
    msg_dovecot_cases,
    msg_dovecot_search,
    msg_dovecot_sections,
    msg_dovecot_sortthread,  # noqa: E402
)
from tests.imap.test_msg_dovecot_parity import parse_value  # noqa: E402

CONF = """\
mail_location = maildir:{root}/mail
base_dir = {root}/run
log_path = {root}/log
protocols =
ssl = no
first_valid_uid = 1
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={root}/home
}}
passdb {{
  driver = static
  args = password=x
}}
"""


class Dovecot:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-record-"))
        self.root.chmod(0o755)  # the mail user (nobody) must reach mail/ and home/
        for d in ("run", "home"):
            (self.root / d).mkdir()
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(CONF.format(root=self.root))
        subprocess.run(["/usr/sbin/dovecot", "-c", str(self.conf)], check=True)

    def stop(self):
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def store(self, messages: list[bytes], times: list[float] | None = None):
        mail = self.root / "mail"
        shutil.rmtree(mail, ignore_errors=True)
        for d in ("cur", "new", "tmp"):
            (mail / d).mkdir(parents=True)
        for i, raw in enumerate(messages):
            p = mail / "cur" / f"{1000 + i}.x{i}.host:2,"
            p.write_bytes(raw)
            if times:
                os.utime(p, (times[i], times[i]))
        subprocess.run(["chown", "-R", "65534:65534", str(mail), str(self.root / "home")])

    def doveadm_fetch(self, field: str, count: int) -> list[bytes]:
        out = subprocess.run(
            ["doveadm", "-c", str(self.conf), "fetch", "-u", "test", "uid " + field, "all"],
            capture_output=True,
            check=True,
        ).stdout
        values: list[bytes] = [b""] * count
        for block in re.split(rb"\nuid: ", b"\n" + out)[1:]:
            uid, rest = block.split(b"\n", 1)
            value = rest.split(field.encode() + b": ", 1)[1].rstrip(b"\n\x0c")
            values[int(uid) - 1] = b"(" + value + b")"
        return values

    def session(self) -> Session:
        return Session(self.conf)


class Session:
    """Dovecot's imap process in preauth mode, one command at a time (it runs pipelined
    FETCHes in parallel, which would interleave their answers)."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["doveadm", "-c", str(self.conf), "exec", "imap", "-u", "test"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.buf = b""
        self.line()
        self.command(b"SELECT INBOX")

    def fill(self):
        chunk = self.proc.stdout.read1(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        m = re.search(rb"\{(\d+)\}$", line)
        while m:
            n = int(m.group(1))
            while len(self.buf) < n:
                self.fill()
            lit, self.buf = self.buf[:n], self.buf[n:]
            while b"\r\n" not in self.buf:
                self.fill()
            rest, self.buf = self.buf.split(b"\r\n", 1)
            line += b"\r\n" + lit + rest
            m = re.search(rb"\{(\d+)\}$", rest)
        return line

    def command(self, text: bytes) -> tuple[list[bytes], bytes]:
        """(untagged lines, tagged status); status b"DISCONNECT" if Dovecot hung up."""
        try:
            self.proc.stdin.write(b"t " + text + b"\r\n")
            self.proc.stdin.flush()
            untagged = []
            while True:
                line = self.line()
                if line.startswith(b"t "):
                    return untagged, line.split(b" ")[1]
                untagged.append(line)
        except (EOFError, BrokenPipeError):
            self.start()
            return [], b"DISCONNECT"


def _digest(value) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()[:8]


def _write(path: Path, doc: str, body: str) -> None:
    path.write_text(f'"""{doc}"""\n\n# fmt: off\n{body}# fmt: on\n')
    subprocess.run(["ruff", "format", str(path)], check=False)


def record_cases(dc: Dovecot) -> dict:
    cases = msg_dovecot_cases.CASES
    names = list(cases)
    dc.store([cases[n][0] for n in names])
    views = [
        dc.doveadm_fetch(f, len(names))
        for f in ("imap.bodystructure", "imap.body", "imap.envelope")
    ]
    new = {n: (cases[n][0], views[0][i], views[1][i], views[2][i]) for i, n in enumerate(names)}
    _write(
        HERE / "msg_dovecot_cases.py",
        msg_dovecot_cases.__doc__,
        "CASES = " + pprint.pformat(new, width=100, sort_dicts=False) + "\n",
    )
    return new


def record_sections_and_search(dc: Dovecot, cases: dict) -> None:
    names = list(cases)
    s = dc.session()
    sections = {}
    for i, n in enumerate(names, 1):
        digests = []
        for item in msg_dovecot_sections.ITEMS:
            untagged, status = s.command(b"FETCH %d (%s)" % (i, item.encode()))
            if status != b"OK":
                digests.append(status.decode())
                continue
            line = next(u for u in untagged if b" FETCH " in u)
            digests.append(_digest(parse_value(line.split(b" FETCH ", 1)[1])[1]))
        sections[n] = " ".join(digests)
    _write(
        HERE / "msg_dovecot_sections.py",
        msg_dovecot_sections.__doc__,
        "ITEMS = " + pprint.pformat(msg_dovecot_sections.ITEMS) + "\n\n"
        "SECTIONS = " + pprint.pformat(sections, width=200, sort_dicts=False) + "\n",
    )
    searches = {}
    for criteria in msg_dovecot_search.SEARCHES:
        untagged, _ = s.command(b"SEARCH CHARSET UTF-8 " + criteria)
        found = next((u for u in untagged if u.startswith(b"* SEARCH")), b"* SEARCH")
        searches[criteria] = [names[int(x) - 1] for x in found.split()[2:]]
    _write(
        HERE / "msg_dovecot_search.py",
        msg_dovecot_search.__doc__,
        "SEARCHES = " + pprint.pformat(searches, width=100, sort_dicts=False) + "\n",
    )


def record_sort_thread(dc: Dovecot) -> None:
    msgs = msg_dovecot_sortthread.MESSAGES
    dc.store([raw for raw, _ in msgs], [t for _, t in msgs])
    s = dc.session()
    sorts = {}
    for criteria in msg_dovecot_sortthread.SORTS:
        untagged, _ = s.command(b"SORT " + criteria + b" UTF-8 ALL")
        line = next(u for u in untagged if u.startswith(b"* SORT"))
        sorts[criteria] = [int(x) for x in line.split()[2:]]
    threads = {}
    for algorithm in msg_dovecot_sortthread.THREADS:
        untagged, _ = s.command(b"THREAD " + algorithm.encode() + b" UTF-8 ALL")
        line = next(u for u in untagged if u.startswith(b"* THREAD"))
        threads[algorithm] = line[len(b"* THREAD ") :]
    _write(
        HERE / "msg_dovecot_sortthread.py",
        msg_dovecot_sortthread.__doc__,
        "MESSAGES = " + pprint.pformat(msgs, width=100) + "\n\n"
        "SORTS = " + pprint.pformat(sorts, width=200, sort_dicts=False) + "\n\n"
        "THREADS = " + pprint.pformat(threads, width=100, sort_dicts=False) + "\n",
    )


def main() -> None:
    if len(sys.argv) > 1:
        global HERE
        HERE = Path(sys.argv[1])  # write somewhere else (to compare with the recorded files)
    dc = Dovecot()
    try:
        cases = record_cases(dc)
        record_sections_and_search(dc, cases)
        record_sort_thread(dc)
    finally:
        dc.stop()


if __name__ == "__main__":
    main()
