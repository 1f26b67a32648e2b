"""`mailsuite import imap`: every folder of a remote IMAP account into a local user.

imaplib over TLS (implicit by default, STARTTLS or clear on request), read-only (EXAMINE and
BODY.PEEK, so the source keeps its \\Seen flags). Flags and INTERNALDATE are kept. Resumable
without a state file: a message is "already here" when the destination folder holds one with
the same Message-ID, internal date (to the second) and RFC822.SIZE, counted as a multiset so
true duplicates survive. A second run therefore copies only what is missing.
"""

from __future__ import annotations

import codecs
import imaplib
import ssl
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec)

from mailsuite.logtext import visible
from mailsuite.progress import Progress
from mailsuite.store import Mailbox
from mailsuite.store.flags import canonical_flag
from mailsuite.sysexits import EX_NOPERM, EX_TEMPFAIL
from mailsuite.transfer.imapresponse import ListEntry, body_of, parse_fetch, parse_list
from mailsuite.transfer.progress import TransferStats
from mailsuite.transfer.target import ImportTarget

BATCH = 50  # messages per UID FETCH of bodies ...
BATCH_BYTES = 16 * 1024 * 1024  # ... and at most this much (one big message alone is fine)
HEADER_SCAN = 64 * 1024
Fingerprint = tuple[bytes, int, int]  # (Message-ID, internal date, wire size)


class ImapImportError(Exception):
    """Cannot connect or log in: the run stops with this one line and exit status `code`
    (EX_NOPERM: the server refused the login; EX_TEMPFAIL: it could not be reached)."""

    def __init__(self, message: str, code: int = EX_TEMPFAIL):
        super().__init__(message)
        self.code = code


def server_text(error: Exception) -> str:
    """The words of an imaplib error as plain text (imaplib hands over the server's response
    as bytes, which would print as b'...'), made safe to print."""
    if len(error.args) == 1 and isinstance(error.args[0], bytes):
        return visible(error.args[0].decode("utf-8", "replace"))
    return visible(str(error))


@dataclass(frozen=True)
class ImapSource:
    host: str
    port: int
    user: str
    password: str
    tls: str = "implicit"  # "implicit" | "starttls" | "none"
    cafile: str | None = None
    insecure: bool = False
    timeout: float = 60.0
    keep_names: bool = False  # True: no mapping of special-use folders onto ours


def _ssl_context(src: ImapSource) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=src.cafile)
    if src.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def connect(src: ImapSource) -> imaplib.IMAP4:
    try:
        if src.tls == "implicit":
            conn = imaplib.IMAP4_SSL(
                src.host, src.port, ssl_context=_ssl_context(src), timeout=src.timeout
            )
        else:
            conn = imaplib.IMAP4(src.host, src.port, timeout=src.timeout)
            if src.tls == "starttls":
                conn.starttls(_ssl_context(src))
    except (OSError, imaplib.IMAP4.error, ssl.SSLError) as e:
        raise ImapImportError(f"{src.host}:{src.port}: {server_text(e)}") from None
    try:
        conn.login(src.user, src.password)
    except imaplib.IMAP4.error as e:
        _close(conn)
        raise ImapImportError(
            f"{src.host}:{src.port} refused the login of {visible(src.user)}: {server_text(e)}",
            EX_NOPERM,
        ) from None
    except OSError as e:
        raise ImapImportError(f"{src.host}:{src.port}: {server_text(e)}") from None
    return conn


def _close(conn: imaplib.IMAP4) -> None:
    try:
        conn.shutdown()
    except OSError:
        pass


def quote(name: bytes) -> bytes:
    """An IMAP quoted string (RFC 3501 §4.3)."""
    return b'"' + name.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def local_name(entry: ListEntry, strip_inbox_prefix: bool) -> str:
    """The remote name decoded from modified UTF-7, with '/' between levels."""
    try:
        name = codecs.decode(entry.name, "imap4-utf-7")
    except (UnicodeError, ValueError):
        name = entry.name.decode("utf-8", "replace")
    if entry.delimiter and entry.delimiter != "/":
        name = name.replace("/", "_").replace(entry.delimiter, "/")
    if name.upper() == "INBOX":
        return "INBOX"
    if strip_inbox_prefix and name.upper().startswith("INBOX/"):
        name = name[6:]  # Courier-style INBOX.Sent: our namespace is flat
    return name


SPECIAL_USE = ("\\sent", "\\drafts", "\\trash", "\\junk", "\\archive")


def destination(
    entry: ListEntry, strip_inbox_prefix: bool, roles: dict[str, str], keep_names: bool = False
) -> str:
    """Where a remote folder goes: a remote special-use folder (RFC 6154), whatever its name
    ("Sent Items", "[Gmail]/Sent Mail"), into our folder with the same role; else its name."""
    if not keep_names:
        for attr in entry.attributes:
            if attr.lower() in SPECIAL_USE and attr.lower() in roles:
                return roles[attr.lower()]
    return local_name(entry, strip_inbox_prefix)


def parse_internaldate(text: bytes) -> float | None:
    """RFC 3501 date-time '28-Nov-2026 19:14:24 +0000' as a UTC epoch."""
    try:
        return datetime.strptime(text.decode("ascii").strip(), "%d-%b-%Y %H:%M:%S %z").timestamp()
    except (ValueError, UnicodeDecodeError):
        return None


def message_id(header: bytes) -> bytes:
    """The Message-ID value of a header block (unfolded, stripped), b'' when absent."""
    value = None
    for line in header.splitlines():
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value += line.strip()
                continue
            break
        if line[:11].lower() == b"message-id:":
            value = line[11:].strip()
    return value or b""


def local_fingerprints(mailbox: Mailbox, folder: str) -> Counter[Fingerprint]:
    f = mailbox.folder(folder)
    f.refresh(force=True)
    counts: Counter[Fingerprint] = Counter()
    for msg in list(f.messages):
        try:
            with open(f.message_path(msg), "rb") as fh:
                head = fh.read(HEADER_SCAN)
        except OSError:
            continue
        end = head.find(b"\n\n")
        counts[
            (message_id(head[: end if end >= 0 else None]), int(msg.internaldate), msg.wire_size)
        ] += 1
    return counts


def _check(typ: str, data, what: str) -> list:
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{what}: {data!r}")
    return data


def _remote_index(conn: imaplib.IMAP4) -> list[tuple[int, list[str], float | None, Fingerprint]]:
    typ, data = conn.uid(
        "FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
    )
    out = []
    for d in parse_fetch(_check(typ, data, "UID FETCH")):
        if "UID" not in d:
            continue
        uid = int(d["UID"])
        flags = [
            canonical_flag(f.decode("utf-8", "replace"))
            for f in d.get("FLAGS") or []
            if isinstance(f, bytes)
        ]
        date = parse_internaldate(d.get("INTERNALDATE") or b"")
        size = int(d.get("RFC822.SIZE") or 0)
        mid = message_id(body_of(d, "BODY[") or b"")
        out.append((uid, flags, date, (mid, int(date or 0), size)))
    return out


def batches(todo: list) -> list[list]:
    """Split (uid, flags, date, size) items into FETCH batches bounded in count and bytes, so
    memory stays flat however big the mailbox."""
    out: list[list] = []
    current: list = []
    size = 0
    for item in todo:
        if current and (len(current) >= BATCH or size + item[3] > BATCH_BYTES):
            out.append(current)
            current, size = [], 0
        current.append(item)
        size += item[3]
    if current:
        out.append(current)
    return out


def _import_folder(conn, entry: ListEntry, dest: str, target: ImportTarget) -> None:
    typ, data = conn.select(quote(entry.name), readonly=True)
    _check(typ, data, f"EXAMINE {dest}")
    if int(data[0] or 0) == 0:
        target.progress.start(dest, 0)
        return
    remote = _remote_index(conn)
    have = local_fingerprints(target.mailbox, dest)
    todo = []
    for uid, flags, date, fp in remote:
        if have[fp] > 0:
            have[fp] -= 1
            target.stats.present += 1
        else:
            todo.append((uid, flags, date, fp[2]))
    target.progress.start(dest, len(todo))
    for batch in batches(todo):
        meta = {uid: (flags, date) for uid, flags, date, _ in batch}
        uids = ",".join(str(uid) for uid in meta)
        typ, data = conn.uid("FETCH", uids, "(UID BODY.PEEK[])")
        fetched = {}
        for d in parse_fetch(_check(typ, data, "UID FETCH")):
            if "UID" in d and body_of(d, "BODY[") is not None:
                fetched[int(d["UID"])] = body_of(d, "BODY[")
        for uid, (flags, date) in meta.items():
            what = f"{dest} UID {uid}"
            data = fetched.get(uid)
            if data is None:
                target.skip(what, "vanished from the server")
            else:
                target.deliver(what, data, dest, flags, date)
            target.progress.advance()


def import_imap(
    src: ImapSource, mailbox: Mailbox, progress: Progress | None = None
) -> TransferStats:
    """Copy what is missing from every selectable remote folder."""
    progress = progress or Progress()
    stats = TransferStats()
    target = ImportTarget(mailbox, stats, progress)
    conn = connect(src)
    try:
        typ, data = conn.list('""', "*")
        entries = parse_list(_check(typ, data, "LIST"))
        others = [e for e in entries if e.name.upper() != b"INBOX"]
        strip = bool(others) and all(
            e.delimiter and e.name.upper().startswith(b"INBOX" + e.delimiter.encode())
            for e in others
        )
        roles = {role.lower(): name for name, role in mailbox.special_use().items()}
        for entry in entries:
            if any(a.lower() in ("\\noselect", "\\nonexistent") for a in entry.attributes):
                continue
            dest = target.ensure_folder(destination(entry, strip, roles, src.keep_names))
            if dest is None:
                continue
            try:
                _import_folder(conn, entry, dest, target)
            except (imaplib.IMAP4.error, ValueError) as e:
                target.skip(f"folder {dest}", str(e))
    finally:
        try:
            conn.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return stats
