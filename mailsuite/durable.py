"""File durability primitives shared by the store and the queue: a message is only "accepted"
once its bytes and its directory entry are on disk."""

from __future__ import annotations

import os


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
