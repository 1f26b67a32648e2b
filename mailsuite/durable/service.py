"""The one way to the disk: durable writes, directory fsyncs, reads and removals of message
files, with one asynchronous interface for the reactor and the same work run blocking in the
caller's thread for the admin command and imports.

    io = DurableIO.open(data_dir)          # at start, before the reactor runs: the probe
    d = io.submit(work, *args)             # reactor: Deferred with work(*args)'s result
    io.write_file(tmp, data, final)        # inside `work`, or blocking in the caller's thread

`work` is plain blocking code made of the operations below (Mailbox.deliver, Queue.enqueue,
...): the reactor hands a whole delivery over once, and the admin command runs the very same
function itself.  The operations' fsyncs go through one GroupCommit, so concurrent deliveries
share passes over the disk whichever thread they run in.
"""

from __future__ import annotations

import os
import secrets

from twisted.internet import defer
from twisted.internet import reactor as default_reactor
from twisted.logger import Logger

from mailsuite.durable.commit import GroupCommit
from mailsuite.durable.files import discard, read_all, read_head, unlink_each, write_synced
from mailsuite.durable.pool import WorkerPool

log = Logger(namespace="mailsuite.durable")

# Deliveries in flight at once; every one beyond the first waits mostly for a group commit.
DEFAULT_THREADS = 32


class DurableIO:
    """Durable file work: blocking operations plus `submit` to run them off the reactor."""

    def __init__(self, threads: int = DEFAULT_THREADS, reactor=None):
        self._reactor = reactor if reactor is not None else default_reactor
        self._threads = threads
        self.commit = GroupCommit()
        self._pool = self._new_pool()
        self._stop_registered = False
        self.fallbacks = 0  # pools replaced after a failure (tests)

    @classmethod
    def open(
        cls, data_dir: str | os.PathLike, threads: int = DEFAULT_THREADS, backend: str = "threads"
    ) -> DurableIO:
        """The service for `data_dir`, after a probe write on that folder's own filesystem
        (blocking: call it before the reactor runs).  A filesystem that cannot create, fsync,
        rename and sync a directory fails here, at start, not at the first delivery.
        `backend` is `[storage] io`: the pool of threads is the one way there is, and a
        configuration that still names "uring" (once an opt-in backend) is run on it, with a
        log line, so that it keeps starting."""
        if backend != "threads":
            log.warn(
                'durable: [storage] io = "{backend}" is no longer offered; using threads',
                backend=backend,
            )
        io = cls(threads)
        probe = os.path.join(data_dir, f".durable-probe.{os.getpid()}.{secrets.token_hex(4)}")
        io.write_file(probe + ".tmp", b"probe\n", probe)
        discard(probe)
        log.info("durable writes: {n} threads with group commit", n=threads)
        return io

    # -- the asynchronous interface ----------------------------------------------------------

    def submit(self, work, *args) -> defer.Deferred:
        """Run `work(*args)` (blocking disk work) in the durable pool; call it on the reactor
        thread.  Deferred with its result or its exception.  A pool that cannot take work (it
        died, or was stopped under us) is replaced by a new one, so deliveries go on."""
        if not self._stop_registered:
            # Registered from the reactor thread, at the first use: deliveries in flight
            # finish before the process exits.
            self._stop_registered = True
            self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        try:
            return self._pool.submit(work, *args)
        except RuntimeError as e:
            log.error("durable pool failed ({err}); starting a new one", err=str(e))
            self.fallbacks += 1
            self._pool = self._new_pool()
            return self._pool.submit(work, *args)

    def call_soon(self, fn, *args) -> None:
        """Run `fn(*args)` on the reactor thread with the next results the pool hands back;
        from inside `work` this rides with that job's own result (no wake-up of the reactor
        of its own).  Safe from any thread."""
        self._pool.call_soon(fn, *args)

    def stop(self) -> None:
        """Finish the work given, end the threads (blocking; the reactor's shutdown calls it)."""
        self._pool.stop()

    def _new_pool(self) -> WorkerPool:
        return WorkerPool(self._reactor, self._threads)

    # -- blocking operations: run them inside `work`, or in the admin command's thread -------

    def write_file(
        self,
        tmp: str | os.PathLike,
        data: bytes,
        final: str | os.PathLike | None = None,
        mtime: float | None = None,
        *,
        replacing: bool = False,
        held: bool = False,
    ) -> None:
        """Create `tmp`, write `data`, fsync, close, rename it to `final` (if given) and fsync
        the folder of the final name.  On failure nothing is left behind (the sender is told to
        retry, so no copy may stay), except with `replacing`: a new version of a file that
        already existed stays under its final name once renamed, as removing it would lose the
        old version too.  `held`: as for place."""
        write_synced(tmp, data)
        self.place(tmp, final, mtime, replacing=replacing, held=held)

    def sync_new_file(
        self,
        tmp: str | os.PathLike,
        fd: int,
        final: str | os.PathLike | None = None,
        mtime: float | None = None,
        *,
        replacing: bool = False,
    ) -> None:
        """The durable half of write_file for a file already written through `fd` (closed
        here): fsync, close, set its time, rename, fsync the final folder."""
        try:
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            discard(tmp)
            raise
        os.close(fd)
        self.place(tmp, final, mtime, replacing=replacing)

    def place(
        self,
        tmp: str | os.PathLike,
        final: str | os.PathLike | None = None,
        mtime: float | None = None,
        *,
        replacing: bool = False,
        held: bool = False,
    ) -> None:
        """Give an fsynced file its time and final name, then fsync that name's folder; on
        failure the file is removed under whichever name it has (see write_file for
        `replacing`).  `held`: rename into the folder and fsync it through a descriptor the
        group commit holds (GroupCommit.folder_fd, which says for which folders)."""
        where = tmp
        try:
            if mtime is not None:
                os.utime(tmp, (mtime, mtime))
            fd = None
            if final is not None:
                final = os.fspath(final)
                folder, name = split_path(final)
                if held:
                    fd = self._rename_held(tmp, final, folder, name)
                else:
                    os.rename(tmp, final)
                where = final
            else:
                folder = split_path(os.fspath(tmp))[0]
            self.commit.fsync_dir(folder, fd)
        except BaseException:
            if where is tmp or not replacing:
                discard(where)
            raise

    def _rename_held(
        self, tmp: str | os.PathLike, final: str, folder: str, name: str
    ) -> int | None:
        """Rename through the folder's held descriptor, returned for the fsync; by path (and
        None) when there is none, or its folder was removed.  `folder` and `name`: `final`
        split."""
        fd = self.commit.folder_fd(folder)
        if fd is not None:
            try:
                os.rename(tmp, name, dst_dir_fd=fd)
                return fd
            except FileNotFoundError:
                if not os.path.exists(tmp):
                    raise
                self.commit.forget(folder, fd)  # removed: the folder now there is another
        os.rename(tmp, final)
        return None

    def fsync_dir(self, path: str | os.PathLike) -> None:
        """Make the names created or renamed into `path` so far durable (group-committed)."""
        self.commit.fsync_dir(path)

    @staticmethod
    def read(path: str | os.PathLike, limit: int) -> bytes:
        """A file's first `limit` bytes."""
        return read_head(path, limit)

    @staticmethod
    def read_all(path: str | os.PathLike) -> bytes:
        """A whole file."""
        return read_all(path)

    @staticmethod
    def unlink(paths: list[str]) -> list[int]:
        """Remove files in order, unsynced (a removal lost in a crash is only done again)."""
        return unlink_each(paths)


def split_path(path: str) -> tuple[str, str]:
    """os.path.split(path), in one C call for the common form (a folder and a name joined by
    one slash, as every delivery's paths are): in the durable pool, the pure-Python split was
    a tenth of a delivery's own interpreter time, held under the GIL the reactor waits for."""
    folder, _, name = path.rpartition("/")
    if not folder or folder[-1] == "/":
        return os.path.split(path)  # no slash, the root, or slashes doubled
    return folder, name
