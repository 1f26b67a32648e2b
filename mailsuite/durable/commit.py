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
        self._folders: dict[str, _Folder] = {}
        # Folders that live as long as the service (the spool's), kept open: their fsyncs
        # skip an open and a close, each a trip of the calling thread out of the GIL and back.
        self._held: dict[str, int] = {}
        weakref.finalize(self, _close_all, self._held)
        self.syncs = 0  # directory fsyncs run (tests and benchmarks read it)

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

    def fsync_dir(self, path: str | os.PathLike) -> None:
        """Return once an fsync of the directory `path` that started after this call has
        finished: the names created or renamed into it before the call are durable.
        OSError if that fsync failed."""
        path = os.fspath(path)
        with self._lock:
            folder = self._folders.get(path)
            if folder is None:
                folder = self._folders[path] = _Folder()
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
                        error = _fsync_dir(path, self._held.get(path))
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
                    del self._folders[path]
        if error is not None:
            raise error


def _close_all(held: dict[str, int]) -> None:
    for fd in held.values():
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
