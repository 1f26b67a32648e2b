"""File durability primitives shared by the store and the queue: a message is only "accepted"
once its bytes and its directory entry are on disk.  Also the reactor's other file work on
messages (reading a queued one, removing finished ones) through the same io_uring."""

from __future__ import annotations

import os

from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsuite import aiofsync, uring

log = Logger(namespace="mailsuite.durable")


def create_file(path: str | os.PathLike, data: bytes) -> int:
    """Create `path` (it must not exist) and write all of `data`; returns the open descriptor,
    not yet fsynced.  On any error the partial file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def write_new_file(path: str | os.PathLike, data: bytes) -> None:
    """Create `path` (it must not exist), write all of `data`, fsync, close; on any error the
    partial file is removed."""
    fd = create_file(path, data)
    try:
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and creations in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(path: str | os.PathLike) -> None:
    """Remove a file a failed write left behind; best effort (the failure is what gets reported)."""
    try:
        os.unlink(path)
    except OSError:
        pass


# -- the same from the reactor thread, without blocking it -----------------------------------

_ring: uring.Ring | None | bool = None


def _uring() -> uring.Ring | None:
    global _ring
    if _ring is None:
        try:
            _ring = uring.Ring()
        except OSError as e:
            log.info(
                "files are written from the reactor and fsynced apart (no io_uring: {err})",
                err=str(e),
            )
            _ring = False
    return _ring or None


def write_async(path: str, data: bytes, *, rename_to: str | None = None) -> defer.Deferred:
    """write_new_file() called on the reactor thread: create `path`, write `data`, fsync, close,
    then rename it to `rename_to` if given and fsync the directory of the final name.
    Deferred[None]; on failure (an OSError) no file is left behind.

    Through io_uring the steps are one chain: the reactor submits it in one system call, the
    kernel wakes one worker for it, and the reactor only reads the results.  Elsewhere the file
    is written as aiofsync.write_files decides and the fsyncs go through aiofsync.  (One
    difference: the kernel runs the rename even when the file's fsync failed, so on a failing
    disk the file can show under its final name for the moment until it is removed.)"""
    ring = _uring()
    if ring is None:
        return _write_apart(path, data, rename_to)
    final = rename_to or path
    steps = [uring.open_new(os.fsencode(path)), uring.write(data), uring.FSYNC, uring.CLOSE]
    rename_step = len(steps)
    if rename_to:
        steps.append(uring.rename(steps[0][1], os.fsencode(rename_to)))
    steps += [uring.open_dir(os.fsencode(os.path.dirname(final))), uring.FSYNC, uring.CLOSE]

    def failed(failure):
        results = failure.value.results
        if results[0] >= 0:  # created by us (an existing file is not ours to remove)
            discard(rename_to if rename_to and results[rename_step] >= 0 else path)
        return _plain(failure)

    return ring.run(steps).addCallbacks(lambda _: None, failed)


def read_async(path: str, limit: int, pool=None) -> defer.Deferred:
    """The first `limit` bytes of the file `path` (all of it, if shorter), read for the reactor
    thread without blocking it: Deferred[bytes], or an OSError.  Through io_uring (open, read,
    close as one chain: no thread hand-over, no contention for the GIL), else in a thread of
    `pool` (by default the reactor's)."""
    ring = _uring()
    if ring is None:
        if pool is None:
            return threads.deferToThread(_read_head, path, limit)
        return threads.deferToThreadPool(reactor, pool, _read_head, path, limit)
    buf = bytearray(limit)
    steps = [uring.open_read(os.fsencode(path)), uring.read(buf), uring.CLOSE]
    return ring.run(steps).addCallbacks(lambda res: bytes(memoryview(buf)[: res[1]]), _plain)


def _read_head(path: str, limit: int) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.read(limit)


def unlink_async(paths: list[str]) -> defer.Deferred:
    """Remove `paths` one after the other from the reactor thread, each whatever became of the
    ones before: Deferred[list of 0 or -errno, one per path].  Not synced (a removal lost in a
    crash is only done again).  Through io_uring (chains of at most uring.MAX_STEPS, one after
    the other, so the order holds), else in the thread pool."""
    ring = _uring()
    if ring is None:
        return threads.deferToThread(lambda: [_unlink_result(p) for p in paths])
    results: list[int] = []

    def from_(start: int) -> defer.Deferred:
        part = paths[start : start + uring.MAX_STEPS]
        if not part:
            return defer.succeed(results)
        d = ring.run([uring.unlink(os.fsencode(p)) for p in part], keep_going=True)
        d.addCallbacks(lambda _: [0] * len(part), lambda failure: failure.value.results)
        return d.addCallback(lambda done: results.extend(done) or from_(start + len(part)))

    return from_(0)


def _unlink_result(path: str) -> int:
    try:
        os.unlink(path)
    except OSError as e:
        return -e.errno
    return 0


def _plain(failure):
    # OSError(errno, text) is built as its specific subclass (FileNotFoundError, ...).
    err = failure.value
    return Failure(OSError(err.errno, err.strerror))


def _write_apart(path: str, data: bytes, rename_to: str | None) -> defer.Deferred:
    final = rename_to or path

    def written(fd: int) -> defer.Deferred:
        d = aiofsync.fsync(fd).addBoth(_closing, fd)
        if rename_to:
            d.addCallback(lambda _: os.rename(path, rename_to))
        d.addErrback(_discarding, path)
        d.addCallback(
            lambda _: aiofsync.fsync_dir(os.path.dirname(final)).addErrback(_discarding, final)
        )
        return d

    return aiofsync.write_files(len(data), create_file, path, data).addCallback(written)


def _closing(result, fd: int):
    os.close(fd)
    return result


def _discarding(failure, path: str):
    discard(path)
    return failure
