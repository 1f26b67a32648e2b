"""The `dovecot-uidlist` file: UIDVALIDITY, next UID and the UID of every message key.

We read versions 1 and 3 and write version 3, so a Dovecot Maildir is adopted with its UIDs
intact and Dovecot can read ours.  New UIDs are appended as lines (as Dovecot does), so a
delivery into a 100,000-message folder does not rewrite the file; the header's next UID is then
the larger of `N` and the last UID + 1.  Lines for removed messages are compacted away now and
then.  All writers hold an exclusive `flock` on a lock file beside it, across processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mailsuite.durable.modes import private_opener

FILENAME = "dovecot-uidlist"
LOCKNAME = "dovecot-uidlist.mslock"

# The lock files each thread holds now (`UidlistFile.held_here`).
_held = threading.local()


class CorruptUidlist(ValueError):
    pass


@dataclass
class Uidlist:
    uidvalidity: int
    next_uid: int
    entries: dict[str, int] = field(default_factory=dict)  # key -> uid
    # Where our view of the file ends, to read only what other processes appended.
    inode: int = 0
    offset: int = 0


def parse(text: bytes) -> Uidlist:
    lines = text.split(b"\n")
    header = lines[0].split()
    if not header:
        raise CorruptUidlist("empty header")
    version = header[0]
    if version == b"1":
        if len(header) < 3 or not header[1].isdigit() or not header[2].isdigit():
            raise CorruptUidlist("bad v1 header")
        ul = Uidlist(int(header[1]), int(header[2]))
    elif version == b"3":
        fields = {f[:1]: f[1:] for f in header[1:]}
        try:
            ul = Uidlist(int(fields[b"V"]), int(fields[b"N"]))
        except (KeyError, ValueError):
            raise CorruptUidlist("bad v3 header") from None
    else:
        raise CorruptUidlist(f"unknown uidlist version {version!r}")
    complete = text.endswith(b"\n")
    body = lines[1:] if complete else lines[1:-1]
    _parse_lines(ul, body, version == b"1")
    ul.offset = len(text) if complete else len(text) - len(lines[-1])
    return ul


def _parse_lines(ul: Uidlist, lines: list[bytes], v1: bool) -> None:
    last = 0
    for line in lines:
        if not line:
            continue
        if v1:
            uid, _, name = line.partition(b" ")
        else:
            head, sep, name = line.partition(b" :")
            if not sep:
                raise CorruptUidlist(f"bad line {line[:60]!r}")
            uid = head.split(b" ", 1)[0]
        # Dovecot records the last known file name, flags included ("key:2,F"); the key before
        # the info separator is what identifies the message.
        name = name.split(b":2,", 1)[0]
        if not uid.isdigit() or not name:
            raise CorruptUidlist(f"bad line {line[:60]!r}")
        n = int(uid)
        if n <= last:
            raise CorruptUidlist("UIDs not ascending")
        last = n
        ul.entries[name.decode("utf-8", "surrogateescape")] = n
    ul.next_uid = max(ul.next_uid, last + 1)


def format_header(ul: Uidlist) -> bytes:
    return f"3 V{ul.uidvalidity} N{ul.next_uid}\n".encode()


def format_line(uid: int, key: str) -> bytes:
    return f"{uid} :{key}\n".encode("utf-8", "surrogateescape")


class UidlistFile:
    """One folder's uidlist on disk, shared safely between processes."""

    def __init__(self, folder_path: Path):
        self.path = folder_path / FILENAME
        self.lock_path = folder_path / LOCKNAME

    @contextmanager
    def locked(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        held = _held.__dict__.setdefault("paths", set())
        where = os.fspath(self.lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.add(where)
            yield
        finally:
            held.discard(where)
            os.close(fd)

    def held_here(self) -> bool:
        """Whether this thread holds the lock now (through another UidlistFile of the same
        folder: the import numbers what it delivers itself, under the lock); taking it again
        would wait for ever, flock being per open file."""
        return os.fspath(self.lock_path) in getattr(_held, "paths", ())

    def stat_signature(self) -> tuple[int, int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def load(self) -> Uidlist | None:
        """Read the whole file; None when missing; CorruptUidlist when unreadable."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return None
        ul = parse(data)
        ul.inode = st.st_ino
        return ul

    def catch_up(self, ul: Uidlist) -> Uidlist:
        """Bring `ul` up to date with what other writers did; call with the lock held."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return ul
        if st.st_ino != ul.inode or st.st_size < ul.offset:
            fresh = self.load()
            return fresh if fresh is not None else ul
        if st.st_size > ul.offset:
            with open(self.path, "rb") as f:
                f.seek(ul.offset)
                tail = f.read()
            complete, _, _ = tail.rpartition(b"\n")
            if complete:
                _parse_lines(ul, complete.split(b"\n"), False)
                ul.offset += len(complete) + 1
        return ul

    def append(self, ul: Uidlist, items: list[tuple[int, str]]) -> None:
        """Append new (uid, key) lines; call with the lock held."""
        if not self.path.exists():
            self.rewrite(ul)
            return
        data = b"".join(format_line(uid, key) for uid, key in items)
        with open(self.path, "ab", opener=private_opener) as f:
            f.write(data)
            ul.offset = f.tell()

    def rewrite(self, ul: Uidlist) -> None:
        """Write the whole file anew (tmp + rename); call with the lock held."""
        body = b"".join(
            format_line(uid, key) for key, uid in sorted(ul.entries.items(), key=lambda kv: kv[1])
        )
        data = format_header(ul) + body
        tmp = self.path.with_name(f"{FILENAME}.tmp{os.getpid()}")
        with open(tmp, "wb", opener=private_opener) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        ul.inode = os.stat(self.path).st_ino
        ul.offset = len(data)


UIDVALIDITY_FILE = "dovecot-uidvalidity"


def new_uidvalidity(maildir_root: Path | None = None) -> int:
    """Time-based, as Dovecot does, so a rebuilt list never reuses an old UIDVALIDITY.

    With the Maildir's root, also greater than any value handed out in it before (kept in hex
    in `dovecot-uidvalidity`, as Dovecot keeps it): a folder deleted and created again within
    the same second must not get its old UIDVALIDITY back (RFC 3501 §2.3.1.1)."""
    now = max(1, int(time.time()))
    if maildir_root is None:
        return now
    path = maildir_root / UIDVALIDITY_FILE
    fd = os.open(maildir_root / f"{UIDVALIDITY_FILE}.mslock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            last = int(path.read_text("ascii").strip() or "0", 16)
        except (OSError, ValueError):
            last = 0
        value = max(now, last + 1) & 0xFFFFFFFF or 1
        tmp = path.with_name(f"{UIDVALIDITY_FILE}.tmp{os.getpid()}")
        with open(tmp, "w", encoding="ascii", opener=private_opener) as f:
            f.write(f"{value:08x}")
        os.replace(tmp, path)
        return value
    finally:
        os.close(fd)
