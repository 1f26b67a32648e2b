"""Per-user quota kept in the Maildir++ `maildirsize` file, counted without rescans.

The first line holds the limits (`<bytes>S,<count>C`), each later line a delta (`<bytes> <count>`)
appended with one O_APPEND write, which is atomic between processes.  Each process reads only
what was appended since its last look.  The Maildir++ spec recalculates the file from the folder
listings once it passes 5120 bytes; for a busy 100,000-message mailbox that is a full rescan every
few hundred deliveries, so we let it grow to RECALC_AT first (a rare self-healing rescan that
also catches files removed behind our back).  Other Maildir++ readers still recalculate at 5120.
"""

from __future__ import annotations

import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from mailsuite.durable.modes import private_opener

RECALC_AT = 512 * 1024  # ~60,000 deltas
# maildirsize files held open for appending, in all mailboxes together: a delivery then counts
# itself with one write instead of an open, a write and a close (in the durable pool each
# system call is a wait for the GIL).  Bounded, so that a server delivering to many mailboxes
# keeps its descriptors; past the bound a mailbox opens its file for each change, as before.
HELD_FILES = 256
_held_lock = threading.Lock()
_held_count = 0


def _take_slot() -> bool:
    global _held_count
    with _held_lock:
        if _held_count >= HELD_FILES:
            return False
        _held_count += 1
        return True


def _give_slot() -> None:
    global _held_count
    with _held_lock:
        _held_count -= 1


def _close_held(box: list) -> None:
    """Close a held descriptor and give its slot back (also when its MaildirSize is gone)."""
    fd = box[0]
    if fd is None:
        return
    box[0] = None
    os.close(fd)
    _give_slot()


class QuotaExceeded(Exception):
    """A delivery that would take the mailbox over its limit; `temporary` for 452 vs 552."""

    def __init__(self, message: str = "mailbox is full", temporary: bool = True):
        super().__init__(message)
        self.temporary = temporary


@dataclass(frozen=True)
class Quota:
    used_bytes: int
    used_messages: int
    limit_bytes: int  # 0: unlimited
    limit_messages: int


class MaildirSize:
    def __init__(self, root: Path, scan):
        self.path = root / "maildirsize"
        self._scan = scan  # callable returning (bytes, count) from the file names
        self._lock = threading.Lock()
        self._offset = 0
        self._inode = 0
        self._limits = (0, 0)
        self._used = (0, 0)
        # [descriptor] of the file at `path` opened O_APPEND, or [None]; used under _lock.
        self._held: list = [None]
        weakref.finalize(self, _close_held, self._held)

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._recalculate(self._limits)
            return
        if st.st_ino == self._inode and st.st_size == self._offset:
            return
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._offset = 0
            self._used = (0, 0)
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        complete, _, _ = data.rpartition(b"\n")
        body = complete
        if self._offset == 0 and complete:
            first, _, body = complete.partition(b"\n")
            self._limits = _parse_limits(first)
        b, c = _add_deltas(body, *self._used)
        self._used = (b, c)
        self._inode = st.st_ino
        self._offset += len(complete) + 1 if complete else 0
        if self._offset > RECALC_AT:
            self._recalculate(self._limits)

    def _recalculate(self, limits: tuple[int, int]) -> None:
        used_b, used_c = self._scan()
        text = f"{limits[0]}S,{limits[1]}C\n{used_b} {used_c}\n"
        tmp = self.path.with_name(f"maildirsize.tmp{os.getpid()}.{threading.get_ident()}")
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
            f.write(text)
        os.replace(tmp, self.path)
        st = self.path.stat()
        self._inode, self._offset = st.st_ino, st.st_size
        self._limits, self._used = limits, (used_b, used_c)

    def get(self) -> Quota:
        with self._lock:
            self._refresh()
            return Quota(self._used[0], self._used[1], *self._limits)

    def set_limits(self, limit_bytes: int, limit_messages: int) -> None:
        with self._lock:
            self._recalculate((limit_bytes, limit_messages))

    def check(self, size: int) -> None:
        if self._unlimited():
            return
        q = self.get()
        if q.limit_bytes and q.used_bytes + size > q.limit_bytes:
            # A message larger than the whole quota can never fit: permanent.
            raise QuotaExceeded("mailbox is full", temporary=size <= q.limit_bytes)
        if q.limit_messages and q.used_messages + 1 > q.limit_messages:
            raise QuotaExceeded("mailbox is full (message count)")

    def _unlimited(self) -> bool:
        """No limits in the file we last read, and it is still that file: the limits line is
        only ever changed by replacing the file, so no need to read what was appended (this
        spares every delivery into an unlimited mailbox an open, read and parse)."""
        if self._limits != (0, 0) or not self._inode:
            return False
        try:
            return os.stat(self.path).st_ino == self._inode
        except OSError:
            return False

    def add(self, size: int, count: int) -> None:
        line = f"{size} {count}\n".encode()
        with self._lock:
            fd = self._held_fd()
            if fd is not None:
                os.write(fd, line)
                return
        self._append(line)

    def charge(self, size: int, check: bool = True) -> None:
        """Count one message of `size` bytes about to be written; with `check`, QuotaExceeded
        (and nothing counted) when it does not fit.  The caller takes it back with
        add(-size, -1) if the write fails.  Counted before it is written, so that concurrent
        deliveries cannot all fit into the same room.  An unlimited mailbox whose file is
        held open is checked and counted in two system calls (fstat, write) instead of four
        (stat; open, write, close)."""
        line = f"{size} 1\n".encode()
        with self._lock:
            fd = self._held_fd()
            if check and not (fd is not None and self._limits == (0, 0)):
                inode = self._inode
                self._refresh()
                self._check_used(size)
                if fd is not None and self._inode != inode:
                    _close_held(self._held)  # replaced meanwhile: append to the new file
                    fd = None
            if fd is not None:
                os.write(fd, line)
                return
        self._append(line)

    def _check_used(self, size: int) -> None:
        b, c = self._used
        limit_b, limit_c = self._limits
        if limit_b and b + size > limit_b:
            raise QuotaExceeded("mailbox is full", temporary=size <= limit_b)
        if limit_c and c + 1 > limit_c:
            raise QuotaExceeded("mailbox is full (message count)")

    def _held_fd(self) -> int | None:
        """The held descriptor of the file last read (under _lock), opening it if a slot is
        free; None when there is none, or the file was replaced or removed since (the file is
        only ever replaced whole, so a held file still linked is the one at `path`)."""
        box = self._held
        if box[0] is not None:
            st = os.fstat(box[0])
            if st.st_nlink and st.st_ino == self._inode:
                return box[0]
            _close_held(box)  # replaced: the next change opens the new file
            return None
        if not self._inode or not _take_slot():
            return None
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            _give_slot()
            return None
        box[0] = fd
        if os.fstat(fd).st_ino != self._inode:
            _close_held(box)
            return None
        return fd

    def _append(self, line: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            with self._lock:
                self._refresh()
            return  # the recalculation already counted the new file
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def _parse_limits(line: bytes) -> tuple[int, int]:
    limit_b = limit_c = 0
    for part in line.decode("ascii", "replace").split(","):
        part = part.strip()
        if part.endswith("S") and part[:-1].isdigit():
            limit_b = int(part[:-1])
        elif part.endswith("C") and part[:-1].isdigit():
            limit_c = int(part[:-1])
    return limit_b, limit_c


def _add_deltas(lines: bytes, b: int, c: int) -> tuple[int, int]:
    """Add the `<bytes> <count>` delta lines to (b, c), skipping lines that are not two
    numbers.  A file read at start can hold ~60,000 lines (RECALC_AT): when every line is two
    numbers around one space (the only form we write) they are summed in C, 3x faster."""
    n = lines.count(b"\n") + 1
    if lines.translate(None, b"-0123456789") == b" \n" * (n - 1) + b" ":
        tokens = lines.split()
        if len(tokens) == 2 * n:
            try:
                return b + sum(map(int, tokens[0::2])), c + sum(map(int, tokens[1::2]))
            except ValueError:
                pass
    return _add_lines(lines, b, c)


def _add_lines(lines: bytes, b: int, c: int) -> tuple[int, int]:
    """_add_deltas line by line: any file, however malformed."""
    for line in lines.split(b"\n"):
        parts = line.split()
        if len(parts) >= 2:
            try:
                b, c = b + int(parts[0]), c + int(parts[1])
            except ValueError:
                continue
    return b, c
