"""APPEND (RFC 3501 §6.3.11), REPLACE (RFC 8508), with MULTIAPPEND (RFC 3502), APPENDUID (RFC 4315 §3),
APPENDLIMIT (RFC 7889) and UTF8=ACCEPT's `UTF8 (literal)` form (RFC 6855 §4).

The literals were received by the command reader, which refused oversized ones before a byte
of them was read; delivery runs in the thread pool through the store (tmp/, fsync, rename)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.imap.commands.expunge import expunge_messages
from mailsuite.imap.commands.mailbox import mailbox_arg, open_folder, store_error
from mailsuite.imap.commands.store import parse_flags
from mailsuite.imap.fetch_items import parse_section
from mailsuite.imap.parser import Atom, ImapBad, ImapNo, Literal8, LiteralBytes, LiteralFile
from mailsuite.imap.sections import section_data
from mailsuite.imap.sequence import format_uid_pairs, parse_sequence_set
from mailsuite.message.binary import armour_binary_parts
from mailsuite.message.content import MessageContent
from mailsuite.store import BadFolderName, NoSuchFolder, QuotaExceeded
from mailsuite.urlauth.url import BadUrl, parse_message_url

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
    # A short one-line quoted string before a literal is a date-time; a malformed one is an
    # error (BAD), never a second message.  A literal never is (RFC 3501 §9: date-time is
    # quoted): it is a message, however short.
    return len(value) < 64 and b"\n" not in value and not isinstance(value, LiteralBytes)


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
        if isinstance(data, Atom) and data.upper() == "CATENATE":
            if i + 1 >= len(args) or not isinstance(args[i + 1], list):
                raise ImapBad("CATENATE needs a list of parts")
            data = _catenation(args[i + 1])
            i += 1
        if not isinstance(data, (bytes, LiteralFile, Catenation)):
            raise ImapBad("APPEND needs a message literal")
        out.append((flags, date, data))
        i += 1
    if not out:
        raise ImapBad("APPEND needs a message literal")
    return out


@dataclass
class Catenation:
    """CATENATE's parts (RFC 4469 §5): ("TEXT", bytes or a spooled LiteralFile) and
    ("URL", url) in order."""

    parts: list[tuple[str, object]]

    def __len__(self) -> int:  # what is known before the URLs are read
        return sum(len(v) for k, v in self.parts if k == "TEXT")


def _catenation(items: list) -> Catenation:
    if not items or len(items) % 2:
        raise ImapBad("CATENATE needs TEXT and URL parts")
    parts: list[tuple[str, object]] = []
    for kind, value in zip(items[0::2], items[1::2], strict=True):
        kind = str(kind).upper() if isinstance(kind, Atom) else ""
        if kind == "TEXT" and isinstance(value, bytes):
            parts.append(("TEXT", bytes(value)))
        elif kind == "TEXT" and isinstance(value, LiteralFile):
            parts.append(("TEXT", value))  # spooled: read when the message is built
        elif kind == "URL" and isinstance(value, (bytes, Atom)):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            parts.append(("URL", text))
        else:
            raise ImapBad("CATENATE parts are TEXT literal or URL string")
    return Catenation(parts)


@defer.inlineCallbacks
def _catenated(session, cat: Catenation):
    """The message CATENATE builds: each URL read (in the durable pool) from the session's own
    mailboxes, its section and partial cut out (RFC 4469 §5, RFC 5092).

    The parts are counted as they are read: once they pass APPENDLIMIT no further URL is read
    (RFC 4469 §5: TOOBIG), so many URLs naming one big message cost one message's read, not
    the sum of them all in memory."""
    limit = session.config.imap.append_limit
    out = []
    total = 0
    for kind, value in cat.parts:
        if total > limit:
            raise ImapNo("TOOBIG", "Message exceeds APPENDLIMIT")
        if kind == "TEXT":
            if isinstance(value, LiteralFile):
                # (closed in the durable pool by the session once the command is done)
                value = yield session.services.store.io.submit(value.file.read)
            out.append(value)
            total += len(value)
            continue
        url = value
        try:
            ref = parse_message_url(url)
            if ref.user is not None and ref.user.lower() != session.user.lower():
                raise BadUrl("another user's mailbox")
            folder = yield defer.maybeDeferred(open_folder, session, ref.mailbox)
            if ref.uidvalidity is not None and ref.uidvalidity != folder.uidvalidity:
                raise BadUrl("UIDVALIDITY does not match")
            msg = folder.by_uid(ref.uid)
            if msg is None:
                raise BadUrl("no such message")
            section = parse_section(ref.section.upper()) if ref.section else None
        except (BadUrl, ImapBad, ImapNo):
            raise ImapNo(f'BADURL "{_quoted(url)}"', "Cannot use that URL") from None
        raw = yield session.services.store.io.submit(folder.read, msg)
        content = MessageContent(raw)
        data = (
            content.wire() if section is None else section_data(section, section.field_set, content)
        )
        if ref.partial is not None:
            start, length = ref.partial
            data = data[start:] if length is None else data[start : start + length]
        out.append(data)
        total += len(data)
    if total > limit:
        raise ImapNo("TOOBIG", "Message exceeds APPENDLIMIT")
    return b"".join(out)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')[:200]


def append(session, cmd):
    if len(cmd.args) < 2:
        raise ImapBad("APPEND needs a mailbox and a message")
    name = mailbox_arg(session, cmd.args[0])
    messages = _messages(cmd.args[1:])
    return _append_all(session, _target(session, name, messages), name, messages)


def _target(session, name: str, messages):
    """The mailbox to append to, once the messages' sizes (RFC 7889) and the folder (RFC 3501
    §6.3.11 TRYCREATE) allow it."""
    limit = session.config.imap.append_limit
    for _, _, data in messages:
        if len(data) > limit:
            raise ImapNo("TOOBIG", "Message exceeds APPENDLIMIT")
        if not data and not isinstance(data, Catenation):
            raise ImapNo("Empty message")
    mbox = session.mailbox
    try:
        if not mbox.exists(name):
            raise ImapNo("TRYCREATE", "Mailbox does not exist")
    except BadFolderName as e:
        raise store_error(e) from None
    return mbox


def _replace(session, cmd, uid: bool):
    """REPLACE / UID REPLACE (RFC 8508): APPEND the new message, then expunge the old one
    from the selected mailbox; if the APPEND fails, the old message stays."""
    if len(cmd.args) < 3:
        raise ImapBad(f"{cmd.name} needs a message, a mailbox and a message literal")
    view = session.view
    number = cmd.args[0]
    if not isinstance(number, Atom) or not number.isdigit() or len(number) > 10:
        raise ImapBad("Invalid message number")
    seqset = parse_sequence_set(number, allow_dollar=False)
    view.check_seqset(seqset, uid)
    if view.readonly:
        raise ImapNo("READ-ONLY", "Mailbox is read-only")
    old = [m for _, m in view.select(seqset, uid) if view.is_live(m)]
    if not old:
        # RFC 8508 §3.3: the message to replace must exist
        raise ImapNo("EXPUNGEISSUED" if not uid else "NONEXISTENT", "No such message")
    name = mailbox_arg(session, cmd.args[1])
    messages = _messages(cmd.args[2:])
    if len(messages) != 1:
        raise ImapBad(f"{cmd.name} takes one message")
    mbox = _target(session, name, messages)
    d = _append_all(session, mbox, name, messages)

    def replaced(result):
        if result is not None:
            # RFC 8508 §3.4: APPENDUID in an untagged OK, before the EXPUNGE
            session.send(f"* OK [{result[0]}] Replacement message ready\r\n".encode())
        if session.view is view:
            return expunge_messages(session, old)
        mbox.expunge(view.folder, old)
        return view.folder.when_written()  # the replaced file is gone before the tagged OK

    d.addCallback(replaced)
    return d


def replace(session, cmd):
    return _replace(session, cmd, uid=False)


def uid_replace(session, cmd):
    return _replace(session, cmd, uid=True)


def _deliver_one(mbox, name: str, flags, date, data):
    """Durable write in the thread pool (a spooled literal is copied from its file), then the
    one new file is indexed on the reactor.

    A literal8 (RFC 3516 §4.3) has its binary parts stored as base64 first, so that
    FETCH BINARY returns them byte for byte; a spooled one is read and armoured in the pool
    (and closed there by the session once the command is done: Session._run_claimed)."""
    if isinstance(data, LiteralFile):
        if data.binary:
            d = mbox.io.submit(_armoured_file, data.file)
            return d.addCallback(lambda raw: mbox.append(raw, name, flags, date))
        return mbox.append(data.file, name, flags, date)
    if isinstance(data, Literal8):
        data = armour_binary_parts(bytes(data))
    return mbox.append(data, name, flags, date)


def _armoured_file(file) -> bytes:
    return armour_binary_parts(file.read())


@defer.inlineCallbacks
def _append_all(session, mbox, name, messages):
    results = []
    try:
        for flags, date, data in messages:
            if isinstance(data, Catenation):
                data = yield _catenated(session, data)
                if len(data) > session.config.imap.append_limit:
                    raise ImapNo("TOOBIG", "Message exceeds APPENDLIMIT")
                if not data:
                    raise ImapNo("Empty message")
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
