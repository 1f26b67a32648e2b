"""The blocking file steps every durable write is made of, shared by the store and the spool.

A message is only "accepted" once its bytes and its directory entry are on disk: create the
file under a temporary name, write, fsync, rename to its final name, fsync that name's folder.
"""

from __future__ import annotations

import os
import threading


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


def write_synced(path: str | os.PathLike, data: bytes) -> None:
    """Create `path` (it must not exist) with all of `data` on disk, and close it: an fsynced
    file in three system calls (open, write, close) instead of four.  Opened O_SYNC, so each
    write returns once its bytes and the file's metadata are durable, as fsync would make
    them; `data` goes in one write (a regular file takes all of it at once), so that is one
    sync.  Each system call lets go of the GIL and must take it back: in the durable pool,
    one fewer is one fewer wait for the reactor's turn.  On any error the file is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def replace_file(final: str | os.PathLike, data: bytes) -> None:
    """Put `data` at `final` durably, replacing what was there: written synced under a
    temporary name beside it, renamed over it, the folder fsynced.  A reader, or a crash,
    sees the old file or the new one, never half of one (blocking: the durable pool or an
    admin command's own thread)."""
    final = os.fspath(final)
    folder, name = os.path.split(final)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    discard(tmp)  # one a crash left behind under this name
    write_synced(tmp, data)
    try:
        os.replace(tmp, final)
    except BaseException:
        discard(tmp)
        raise
    fsync_dir(folder or ".")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames and creations in `path` durable (one fsync of its own)."""
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


def read_head(path: str | os.PathLike, limit: int) -> bytes:
    """The first `limit` bytes of a file (all of it, if shorter)."""
    with open(path, "rb", buffering=0) as f:
        return f.read(limit)


_PIECE = 256 * 1024


def read_all(path: str | os.PathLike) -> bytes:
    """A whole file, in as few system calls as its size allows: one read for a file of less
    than 256 KiB, as a read of a regular file returns less than asked only at its end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pieces = []
        while piece := os.read(fd, _PIECE):
            pieces.append(piece)
            if len(piece) < _PIECE:
                break
    finally:
        os.close(fd)
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def unlink_each(paths: list[str]) -> list[int]:
    """Remove `paths` in order, each whatever became of the ones before: 0 or -errno each."""
    results = []
    for path in paths:
        try:
            os.unlink(path)
        except OSError as e:
            results.append(-e.errno)
        else:
            results.append(0)
    return results
