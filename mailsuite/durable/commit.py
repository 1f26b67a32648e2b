"""Group commit of directory fsyncs: the renames of concurrent deliveries into one folder made
durable by one fsync of that folder.

Why: every durable write ends with an fsync of the folder its new name is in, and concurrent
deliveries mostly rename into the same few folders (`new/` of busy mailboxes, the spool's
`entries/`).  Ten threads each syncing `entries/` for their own rename wait for ten fsyncs where
one covers them all.  Here the first caller for a folder while no fsync of it is running
becomes the leader: it fsyncs the folder once for every caller waiting on it, and wakes them.
Callers that arrive during that fsync wait for the next one, so the fsync that covers a rename
always started after that rename (the guarantee a caller is owed).  Different folders are
synced in parallel, and the files' own fsyncs run in their writers' threads, in parallel: the
file system's journal already merges concurrent fsyncs of files into one commit (measured on
ext4: serializing them in one leader halved the rate).

Thread-safe and blocking: it serves the durable pool's threads and a caller's own thread (the
admin command) alike, so the blocking and the asynchronous paths share this code.
"""

from __future__ import annotations

import os
import threading
import weakref

# Folders held open on demand (`folder_fd`), besides those held for the service's life: a
# mailbox's new/ gets its renames and fsyncs through one descriptor instead of an open and a
# close each time.  Bounded, so that a server delivering to many mailboxes keeps its
# descriptors; past the bound the rest are opened for each fsync.
HELD_FOLDERS = 256


class _Folder:
    """The fsync state of one directory."""

    __slots__ = ("cond", "syncing", "waiting", "started", "finished", "errors")

    def __init__(self) -> None:
        # Its own condition on the shared lock, so that the end of an fsync wakes only the
        # callers waiting for this folder; made by the first caller that has to wait (a
        # Condition costs more to make than the rest of an uncontended call).
        self.cond: threading.Condition | None = None
        self.syncing = False
        self.waiting = 0
        self.started = 0  # fsyncs started
        self.finished = 0  # fsyncs finished
        self.errors: dict[int, OSError] = {}  # failed fsyncs by number, while still wanted


class GroupCommit:
    """Blocking fsync_dir() whose concurrent calls for a folder share one fsync."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: dict = {}  # by path, or (path, descriptor) for a held-on-demand one
        # Folders that live as long as the service (the spool's), kept open: their fsyncs
        # skip an open and a close, each a trip of the calling thread out of the GIL and back.
        self._held: dict[str, int] = {}
        # Held on demand (folder_fd), apart: only callers that renamed through one have it
        # fsynced (fsync_dir's `fd`).  Those forgotten since are left open, as another thread
        # may still be using one, and closed with the service.
        self._kept: dict[str, int] = {}
        self._forgotten: list[int] = []
        weakref.finalize(self, _close_all, self._held, self._kept, self._forgotten)
        self.syncs = 0  # directory fsyncs run (tests and benchmarks read it)

    def folder_fd(self, path: str) -> int | None:
        """A descriptor of the directory `path` held open (opened now while fewer than
        HELD_FOLDERS are), for renaming into it (``os.rename(src, name, dst_dir_fd=fd)``)
        and for its fsyncs; None past the bound.  A rename through it lands in the very
        directory the fsync covers, even if `path` was removed and made again meanwhile (the
        rename into a removed directory fails: then `forget` it and rename by path).  A folder
        renamed while held is `release`d after its rename: the descriptor follows it to its
        new name, where a rename through it still lands until then (as one just before the
        folder's rename would have)."""
        fd = self._kept.get(path)
        if fd is not None or len(self._kept) + len(self._forgotten) >= HELD_FOLDERS:
            return fd
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        with self._lock:
            kept = self._kept.setdefault(path, fd)
        if kept != fd:  # another thread was first
            os.close(fd)
        return kept

    def forget(self, path: str, fd: int) -> None:
        """Stop using `fd` for `path` (its directory was removed); the next folder_fd opens
        the directory now at `path`."""
        with self._lock:
            if self._kept.get(path) == fd:
                del self._kept[path]
                self._forgotten.append(fd)

    def release(self, path: str) -> None:
        """Stop using the descriptor held for `path`, if one is (its directory was renamed
        away): the next folder_fd opens whatever directory is at `path` then."""
        with self._lock:
            fd = self._kept.pop(path, None)
            if fd is not None:
                self._forgotten.append(fd)

    def hold(self, path: str | os.PathLike) -> None:
        """Keep the directory `path` open for its fsyncs from now on (blocking).  Only for a
        folder that is never removed while the service lives: one removed and made again
        under the same name would be another directory than the one held."""
        path = os.fspath(path)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        with self._lock:
            old = self._held.get(path)
            self._held[path] = fd
        if old is not None:
            os.close(old)

    def fsync_dir(self, path: str | os.PathLike, fd: int | None = None) -> None:
        """Return once an fsync of the directory `path` that started after this call has
        finished: the names created or renamed into it before the call are durable.
        OSError if that fsync failed.  `fd`: the descriptor from folder_fd the names were
        renamed through; that very directory is fsynced (with the callers that name it)."""
        path = os.fspath(path)
        key = path if fd is None else (path, fd)
        with self._lock:
            folder = self._folders.get(key)
            if folder is None:
                folder = self._folders[key] = _Folder()
            # The next fsync to start is the first that covers this caller.
            mine = folder.started + 1
            folder.waiting += 1
            try:
                while folder.finished < mine:
                    if folder.syncing:
                        if folder.cond is None:
                            folder.cond = threading.Condition(self._lock)
                        folder.cond.wait()
                        continue
                    folder.syncing = True
                    folder.started += 1
                    number = folder.started
                    self._lock.release()
                    try:
                        error = _fsync_dir(path, self._held.get(path) if fd is None else fd)
                    finally:
                        self._lock.acquire()
                        folder.syncing = False
                        folder.finished = number
                        self.syncs += 1
                    if error is not None:
                        folder.errors[number] = error
                    if folder.cond is not None:
                        folder.cond.notify_all()
                error = folder.errors.get(mine)
            finally:
                folder.waiting -= 1
                if not folder.waiting and not folder.syncing:
                    del self._folders[key]
        if error is not None:
            raise error


def _close_all(held: dict[str, int], kept: dict[str, int], forgotten: list[int]) -> None:
    for fd in [*held.values(), *kept.values(), *forgotten]:
        os.close(fd)


def _fsync_dir(path: str, held: int | None) -> OSError | None:
    if held is not None:
        try:
            os.fsync(held)
        except OSError as e:
            return e
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        return e
    return None
