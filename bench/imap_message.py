#!/usr/bin/env python3
"""Message-content hot paths without sockets: FETCH header fields / ENVELOPE / BODYSTRUCTURE
(cold parse and from the parsed cache) and SEARCH SUBJECT / TEXT over M generated messages.

    python3 bench/imap_message.py --messages 10000

Prints CPU seconds per operation (best of --repeat), so a busy machine skews it less than
wall time.  Compare with the Dovecot rows of ../shared/peers/BASELINE.md, which are wall time
for the whole round trip (socket and client parsing included).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from mailsuite.imap.fetch import FetchRenderer, parse_fetch_items
from mailsuite.imap.parser import parse_line
from mailsuite.imap.search import SearchContext, evaluate, parse_search_command
from mailsuite.message.content import MessageContent
from mailsuite.store.parsed_cache import MemoryLRU, ParsedCache

WORDS = (
    "meeting budget report project release deadline invoice schedule review update server "
    "mailbox forecast customer contract proposal agenda minutes summary draft attachment the of "
    "and to in is you that it he was for on are as with his they at be this have from"
).split()
NAMES = ["Anna Berg", "Jörg Müller", "Li Wei", "Sam O'Neil", "Priya Nair", "José Álvarez"]


def _addr(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    local = name.split()[0].lower().encode("ascii", "ignore").decode() or "user"
    if name.isascii():
        return f'"{name}" <{local}@example.org>'
    import base64

    enc = base64.b64encode(name.encode()).decode()
    return f"=?UTF-8?B?{enc}?= <{local}@example.org>"


def _text(rng: random.Random, size: int, marker: str | None) -> str:
    words = [rng.choice(WORDS) for _ in range(size // 6)]
    if marker:
        words.insert(rng.randrange(len(words)), marker)
    lines, line = [], []
    for w in words:
        line.append(w)
        if len(line) > 11:
            lines.append(" ".join(line))
            line = []
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def make_message(rng: random.Random, i: int) -> bytes:
    subject = " ".join(rng.choice(WORDS) for _ in range(4))
    if i % 20 == 7:
        subject += " quarterly"
    head = (
        f"Received: from mx.example.net (mx.example.net [192.0.2.{i % 250}])\n"
        f"\tby mail.example.test with ESMTPS id {i:012x}; Mon, 13 Nov 2023 10:00:00 +0000\n"
        f"Message-ID: <{i}.{rng.getrandbits(32):08x}@example.org>\n"
        f"Date: Mon, 13 Nov 2023 10:{i % 60:02d}:00 +0000\n"
        f"From: {_addr(rng)}\nTo: {_addr(rng)}\nSubject: {subject}\nMIME-Version: 1.0\n"
    )
    marker = "zebracorn" if i % 100 == 42 else None
    size = rng.randint(1500, 7000)
    if i % 5 == 0:
        b = f"b{i:08x}"
        body = (
            f"--{b}\nContent-Type: text/plain; charset=utf-8\n\n{_text(rng, size // 2, marker)}"
            f"--{b}\nContent-Type: text/html; charset=utf-8\n\n<p>{_text(rng, size // 2, None)}"
            f"</p>\n--{b}--\n"
        )
        head += f'Content-Type: multipart/alternative; boundary="{b}"\n'
    else:
        body = _text(rng, size, marker)
        head += "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 7bit\n"
    return (head + "\n" + body).encode()


class Msg:
    __slots__ = ("uid", "key", "size", "wire_size", "internaldate", "modseq", "flags")

    def __init__(self, uid: int, raw: bytes):
        self.uid = uid
        self.key = f"bench{uid}"
        self.size = len(raw)
        self.wire_size = len(raw) + raw.count(b"\n")
        self.internaldate = 1.7e9 + uid
        self.modseq = uid
        self.flags = frozenset()


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = random.Random(7)
    raws = [make_message(rng, i) for i in range(a.messages)]
    msgs = [Msg(i + 1, r) for i, r in enumerate(raws)]

    def raw_loader(m):
        return MessageContent(raws[m.uid - 1])

    tmp = Path(tempfile.mkdtemp())
    cache = ParsedCache(tmp / "bench.sqlite", memory=MemoryLRU(256 * 1024 * 1024))
    cache_loader = cache.loader(lambda m: raws[m.uid - 1])

    def fetch(items: bytes, loader, memo: bool = False):
        """The server's rendering: one compiled request, responses appended to one list.
        memo=False: IMAP's memo of rendered items is emptied first, so that the row measures
        rendering from the content or the parsed cache."""
        req = parse_fetch_items(parse_line(b"a FETCH 1:* " + items).args[1:])
        renderer = FetchRenderer(req)

        def run():
            if not memo:
                renderer.memo.clear()
            out: list[bytes] = []
            for i, m in enumerate(msgs):
                renderer.render(i + 1, m, m.flags, loader, out)
            cache.flush()

        return run

    def search(criteria: bytes, loader):
        _, prog = parse_search_command(parse_line(b"a SEARCH " + criteria).args)
        return lambda: evaluate(prog, msgs, SearchContext(content_loader=loader))

    hdr = b"(BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"
    rows = [
        ("FETCH (UID FLAGS RFC822.SIZE)", fetch(b"(UID FLAGS RFC822.SIZE)", None), a.repeat),
        ("FETCH header fields, bytes in memory", fetch(hdr, raw_loader), a.repeat),
        (
            "FETCH ENVELOPE BODYSTRUCTURE, cold parse",
            fetch(b"(ENVELOPE BODYSTRUCTURE)", raw_loader),
            1,
        ),
        (
            "FETCH ENVELOPE BODYSTRUCTURE, cache fill",
            fetch(b"(ENVELOPE BODYSTRUCTURE)", cache_loader),
            1,
        ),
        (
            "FETCH ENVELOPE BODYSTRUCTURE, parsed cache",
            fetch(b"(ENVELOPE BODYSTRUCTURE)", cache_loader),
            a.repeat,
        ),
        (
            "FETCH ENVELOPE BODYSTRUCTURE, cached",
            fetch(b"(ENVELOPE BODYSTRUCTURE)", cache_loader, memo=True),
            a.repeat,
        ),
        ("SEARCH SUBJECT quarterly (first)", search(b"SUBJECT quarterly", raw_loader), 1),
        ("SEARCH SUBJECT quarterly (again)", search(b"SUBJECT quarterly", raw_loader), a.repeat),
        ("SEARCH TEXT zebracorn", search(b"TEXT zebracorn", raw_loader), a.repeat),
        ("SEARCH BODY zebracorn", search(b"BODY zebracorn", raw_loader), a.repeat),
    ]
    print(f"{a.messages} messages, {sum(map(len, raws)) / len(raws):.0f} bytes average")
    print(f"| {'operation':<44} | {'CPU s':>7} | {'us/msg':>7} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 9}|")
    for name, fn, repeat in rows:
        s = best(fn, repeat)
        print(f"| {name:<44} | {s:7.3f} | {s / a.messages * 1e6:7.1f} |")
    cache.close()


if __name__ == "__main__":
    main()
