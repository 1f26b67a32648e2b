"""The mbox file format (mboxrd): splitting, From_ lines, escaping, and Status flag headers.

mboxrd: a message starts with a "From " line at the start of the file or after an empty line;
body lines matching `^>*From ` get one more `>` when written and lose one when read, so any
message survives a round trip. Flags travel in `Status:` / `X-Status:` / `X-Keywords:` headers,
as Dovecot, mutt and Pine write them; they are mbox metadata and are removed on import.
Pure: bytes in, values out (the reader takes any iterable of lines, e.g. an open file).
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_tz

_FROM_ESCAPED = re.compile(rb"^>+From ")
_NEEDS_ESCAPE = re.compile(rb"^>*From ")
# "From sender Sat Nov 28 19:14:24 2026" (asctime), optionally with a zone before/after the year.
_FROM_DATE = re.compile(
    rb"(?P<dow>[A-Z][a-z]{2}) +(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) +"
    rb"(?P<time>\d{1,2}:\d{2}(?::\d{2})?)(?: +(?P<tz1>[+-]\d{4}|[A-Z]{3,4}))? +(?P<year>\d{4})"
    rb"(?: +(?P<tz2>[+-]\d{4}))?"
)
_METADATA_HEADERS = (b"status:", b"x-status:", b"x-keywords:")

# Status: R = read; X-Status: A = answered, F = flagged, T = draft, D = deleted (Pine/Dovecot).
_STATUS_FLAGS = {b"R": "\\Seen"}
_XSTATUS_FLAGS = {b"A": "\\Answered", b"F": "\\Flagged", b"T": "\\Draft", b"D": "\\Deleted"}
# X-Mozilla-Status bits (Thunderbird's own mbox files).
_MOZILLA_BITS = {0x1: "\\Seen", 0x2: "\\Answered", 0x4: "\\Flagged", 0x1000: "$Forwarded"}


@dataclass
class MboxMessage:
    """One message as found in the file: its bytes (unescaped, metadata headers removed),
    the flags those headers carried, and the From_ line's date (UTC epoch) if readable."""

    data: bytes
    flags: frozenset[str] = field(default_factory=frozenset)
    date: float | None = None
    index: int = 0  # 1-based position in the file, for reports


def parse_from_date(line: bytes) -> float | None:
    """The UTC epoch of a From_ line's asctime date; None when it has none we can read."""
    m = _FROM_DATE.search(line)
    if not m:
        return None
    hms = m["time"].decode()
    if hms.count(":") == 1:
        hms += ":00"
    text = f"{m['day'].decode()} {m['mon'].decode()} {m['year'].decode()} {hms}"
    try:
        t = time.strptime(text, "%d %b %Y %H:%M:%S")
    except ValueError:
        return None
    offset = 0
    tz = m["tz1"] or m["tz2"]
    if tz and tz[:1] in b"+-":
        sign = -1 if tz[:1] == b"-" else 1
        offset = sign * (int(tz[1:3]) * 3600 + int(tz[3:5]) * 60)
    return float(calendar.timegm(t) - offset)


def _header_end(data: bytes) -> int:
    """Offset just past the header block's last line (before the empty line)."""
    if data.startswith((b"\n", b"\r\n")):
        return 0
    for sep in (b"\n\n", b"\n\r\n"):
        i = data.find(sep)
        if i >= 0:
            return i + 1
    return len(data)


def split_metadata(data: bytes) -> tuple[bytes, frozenset[str]]:
    """Remove Status/X-Status/X-Keywords headers, returning the message and their flags."""
    end = _header_end(data)
    head, body = data[:end], data[end:]
    kept: list[bytes] = []
    flags: set[str] = set()
    lines = head.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        # A header continues on lines starting with white space (RFC 5322 §2.2.3).
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        whole = b"".join(lines[i:j])
        name = line.split(b":", 1)[0].strip().lower() + b":"
        if name in _METADATA_HEADERS:
            value = whole.split(b":", 1)[1].split()
            if name == b"status:":
                flags.update(f for c, f in _STATUS_FLAGS.items() if any(c in v for v in value))
            elif name == b"x-status:":
                flags.update(f for c, f in _XSTATUS_FLAGS.items() if any(c in v for v in value))
            else:
                flags.update(v.decode("utf-8", "replace") for v in value)
        else:
            if name == b"x-mozilla-status:":
                flags.update(_mozilla_flags(whole))
            kept.append(whole)
        i = j
    return b"".join(kept) + body, frozenset(flags)


def _mozilla_flags(header: bytes) -> set[str]:
    try:
        bits = int(header.split(b":", 1)[1].strip(), 16)
    except ValueError:
        return set()
    return {flag for bit, flag in _MOZILLA_BITS.items() if bits & bit}


def read_mbox(lines: Iterable[bytes]) -> Iterator[MboxMessage]:
    """Messages of an mbox, streaming: memory holds one message at a time."""
    current: list[bytes] | None = None
    date: float | None = None
    prev_blank = True
    index = 0
    for line in lines:
        if line.startswith(b"From ") and prev_blank:
            if current is not None:
                yield _finish(current, date, index)
            index += 1
            current, date = [], parse_from_date(line)
            prev_blank = False
            continue
        prev_blank = line in (b"\n", b"\r\n")
        if current is None:
            continue  # junk before the first From_ line
        if _FROM_ESCAPED.match(line):
            line = line[1:]
        current.append(line)
    if current is not None:
        yield _finish(current, date, index)


def _finish(lines: list[bytes], date: float | None, index: int) -> MboxMessage:
    # The empty line before the next From_ belongs to the file format, not to the message.
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]
    data, flags = split_metadata(b"".join(lines))
    return MboxMessage(data, flags, date, index)


def from_line(sender: str, date: float) -> bytes:
    """'From sender asctime' in UTC."""
    return b"From %s %s\n" % (
        sender.encode("ascii", "replace") or b"MAILER-DAEMON",
        time.asctime(time.gmtime(date)).encode(),
    )


def status_headers(flags: Iterable[str]) -> bytes:
    """Status, X-Status and X-Keywords lines for `flags`, as split_metadata reads them."""
    flags = set(flags)
    out = [b"Status: " + (b"RO" if "\\Seen" in flags else b"O") + b"\n"]
    x = b"".join(c for c, f in _XSTATUS_FLAGS.items() if f in flags)
    if x:
        out.append(b"X-Status: " + x + b"\n")
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    if keywords:
        out.append(b"X-Keywords: " + " ".join(keywords).encode("utf-8") + b"\n")
    return b"".join(out)


def envelope_sender(data: bytes) -> str:
    """The Return-Path address of a stored message, for the From_ line; MAILER-DAEMON if none."""
    head = data[: _header_end(data)]
    for line in head.splitlines():
        if line[:12].lower() == b"return-path:":
            addr = line[12:].strip().strip(b"<>").strip()
            if addr and b" " not in addr:
                return addr.decode("ascii", "replace")
    return "MAILER-DAEMON"


def format_message(data: bytes, flags: Iterable[str], date: float) -> bytes:
    """One message as an mbox entry: From_ line, escaped text with flag headers, empty line."""
    end = _header_end(data)
    head, body = data[:end], data[end:]
    text = head + status_headers(flags) + body
    lines = text.splitlines(keepends=True)
    escaped = b"".join(b">" + ln if _NEEDS_ESCAPE.match(ln) else ln for ln in lines)
    if not escaped.endswith(b"\n"):
        escaped += b"\n"  # mbox cannot hold a message without a final newline
    return from_line(envelope_sender(data), date) + escaped + b"\n"


def date_from_header(data: bytes) -> float | None:
    """The Date: header as a UTC epoch, a fallback when the From_ line has no date."""
    head = data[: _header_end(data)]
    for line in head.splitlines():
        if line[:5].lower() == b"date:":
            parsed = parsedate_tz(line[5:].decode("ascii", "replace").strip())
            if parsed:
                return float(calendar.timegm(parsed[:9]) - (parsed[9] or 0))
    return None
