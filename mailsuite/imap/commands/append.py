"""APPEND (RFC 3501 §6.3.11) with MULTIAPPEND (RFC 3502), APPENDUID (RFC 4315 §3),
APPENDLIMIT (RFC 7889) and UTF8=ACCEPT's `UTF8 (literal)` form (RFC 6855 §4).

The literals were received by the command reader, which refused oversized ones before a byte
of them was read; delivery runs in the thread pool through the store (tmp/, fsync, rename)."""

from __future__ import annotations

import calendar
import re

from twisted.internet import defer

from mailsuite.imap.commands.mailbox import mailbox_arg, store_error
from mailsuite.imap.commands.store import parse_flags
from mailsuite.imap.parser import Atom, ImapBad, ImapNo, LiteralFile
from mailsuite.imap.sequence import format_uid_pairs
from mailsuite.store import BadFolderName, NoSuchFolder, QuotaExceeded

_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}
_DATE_TIME = re.compile(
    r"^([ \d]?\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$"
)


def parse_date_time(value) -> float:
    """RFC 3501 §9 date-time `"dd-Mon-yyyy hh:mm:ss +zzzz"` as a POSIX timestamp."""
    if not isinstance(value, bytes):
        raise ImapBad("Invalid date-time")
    m = _DATE_TIME.match(value.decode("ascii", "replace"))
    if not m:
        raise ImapBad("Invalid date-time")
    day, mon, year, hh, mm, ss, sign, zh, zm = m.groups()
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        raise ImapBad("Invalid month in date-time")
    try:
        ts = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss), 0, 0, 0))
    except (ValueError, OverflowError):
        raise ImapBad("Invalid date-time") from None
    offset = (int(zh) * 60 + int(zm)) * 60
    return float(ts - offset if sign == "+" else ts + offset)


def _looks_like_date(value: bytes) -> bool:
    # A short one-line string before a literal is a date-time; a malformed one is an error
    # (BAD), never a second message.
    return len(value) < 64 and b"\n" not in value


def _messages(args: list) -> list[tuple[list[str], float | None, bytes]]:
    out = []
    i = 0
    while i < len(args):
        flags: list[str] = []
        date = None
        if isinstance(args[i], list):
            flags = parse_flags(args[i])
            i += 1
        if i + 1 < len(args) and isinstance(args[i], bytes) and _looks_like_date(args[i]):
            nxt = args[i + 1]
            if isinstance(nxt, bytes) or (isinstance(nxt, Atom) and nxt.upper() == "UTF8"):
                date = parse_date_time(args[i])
                i += 1
        if i >= len(args):
            raise ImapBad("APPEND needs a message literal")
        data = args[i]
        if isinstance(data, Atom) and data.upper() == "UTF8":
            # RFC 6855 §4: UTF8 (~{n}...) carries a message with UTF-8 headers.
            if i + 1 >= len(args) or not isinstance(args[i + 1], list) or len(args[i + 1]) != 1:
                raise ImapBad("Invalid UTF8 APPEND data")
            data = args[i + 1][0]
            i += 1
        if not isinstance(data, (bytes, LiteralFile)):
            raise ImapBad("APPEND needs a message literal")
        out.append((flags, date, data))
        i += 1
    if not out:
        raise ImapBad("APPEND needs a message literal")
    return out


def append(session, cmd):
    if len(cmd.args) < 2:
        raise ImapBad("APPEND needs a mailbox and a message")
    name = mailbox_arg(session, cmd.args[0])
    messages = _messages(cmd.args[1:])
    limit = session.config.imap.append_limit
    for _, _, data in messages:
        if len(data) > limit:
            raise ImapNo("TOOBIG", "Message exceeds APPENDLIMIT")
        if not data:
            raise ImapNo("Empty message")
    mbox = session.mailbox
    try:
        if not mbox.exists(name):
            raise ImapNo("TRYCREATE", "Mailbox does not exist")
    except BadFolderName as e:
        raise store_error(e) from None
    return _append_all(session, mbox, name, messages)


def _deliver_one(mbox, name: str, flags, date, data):
    """Durable write in the thread pool (a spooled literal is copied from its file), then the
    one new file is indexed on the reactor."""
    if isinstance(data, LiteralFile):
        d = mbox.append(data.file, name, flags, date)
        return d.addBoth(_closing(data))
    return mbox.append(data, name, flags, date)


def _closing(literal: LiteralFile):
    def close(result):
        literal.close()
        return result

    return close


@defer.inlineCallbacks
def _append_all(session, mbox, name, messages):
    results = []
    try:
        for flags, date, data in messages:
            folder, uid = yield _deliver_one(mbox, name, flags, date, data)
            results.append((folder, uid))
    except Exception as e:
        # RFC 3502 §6.3.11: MULTIAPPEND is all or nothing.
        if results:
            folder = results[0][0]
            done = [folder.by_uid(u) for _, u in results]
            mbox.expunge(folder, [m for m in done if m is not None])
        if isinstance(e, (NoSuchFolder, QuotaExceeded, BadFolderName, OSError)):
            raise store_error(e) from None
        raise
    folder = results[-1][0]
    uids = [u for _, u in results if u is not None]
    # What the user files in Sent names people they write to (queued: no wait here).
    session.services.junk.after_append(mbox, folder, uids)
    if len(uids) != len(results):
        return None
    # RFC 4315 §3: APPENDUID uidvalidity uid-set.
    return (f"APPENDUID {folder.uidvalidity} {format_uid_pairs(uids)}", "APPEND completed")
