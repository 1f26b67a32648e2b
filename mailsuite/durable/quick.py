"""The system calls of a durable write that return at once (close a file, rename it, append a
line to a file), made without letting go of the interpreter lock.

Why: a durable-pool thread lets go of the GIL around every `os` call and must take it back
after.  While the reactor is busy (running Python, not blocked in epoll) it gets it back only
when the reactor lets go at one of its own system calls *and* wakes first, else after the
switch interval: each call of a delivery costs its thread a wait, the delivery's answer waits
for all of them, and at ten concurrent SMTP sessions that latency, not CPU, set the rate.
These calls take microseconds (page cache and the journal's memory, no wait for the disk),
so holding the lock through them costs the reactor less than the hand-over.  The calls that
do wait for the disk (the synced write, the fsyncs) still go through `os` and let it go.

How: `ctypes.PyDLL` (documented to hold the GIL during the call) on the C library's POSIX
functions, only those with a fixed argument list (not open(), whose mode is a variadic
argument, passed differently from a fixed one on some platforms).  Where that library cannot
be loaded, the plain `os` functions are used (`USE_LIBC` is False): the same results, the
hand-over as before.
"""

from __future__ import annotations

import ctypes
import errno
import os

try:
    _libc = ctypes.PyDLL(None, use_errno=True)
    _close = _libc.close
    _close.argtypes = (ctypes.c_int,)
    _close.restype = ctypes.c_int
    _rename = _libc.rename
    _rename.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    _rename.restype = ctypes.c_int
    _renameat = _libc.renameat
    _renameat.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
    _renameat.restype = ctypes.c_int
    _write = _libc.write
    _write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    _write.restype = ctypes.c_ssize_t
    USE_LIBC = True
except (OSError, AttributeError):  # no C library to load (or not a POSIX one)
    USE_LIBC = False


def _path(path) -> bytes:
    raw = os.fsencode(path)
    if b"\0" in raw:
        raise ValueError("embedded null byte")  # as os.open says; C would cut the name
    return raw


def _fail(path=None, path2=None):
    code = ctypes.get_errno()
    name = None if path is None else os.fspath(path)
    name2 = None if path2 is None else os.fspath(path2)
    raise OSError(code, os.strerror(code), name, None, name2)


def close(fd: int) -> None:
    """os.close(fd), holding the GIL."""
    if not USE_LIBC:
        os.close(fd)
    elif _close(fd) < 0 and ctypes.get_errno() != errno.EINTR:  # closed even then (Linux)
        _fail()


def rename(src: str | os.PathLike, dst: str | os.PathLike, dst_dir_fd: int | None = None):
    """os.rename(src, dst, dst_dir_fd=...), holding the GIL."""
    if dst_dir_fd is None and USE_LIBC:
        result = _rename(_path(src), _path(dst))
    elif USE_LIBC and os.path.isabs(src):
        # POSIX renameat: the first descriptor is not used for an absolute name (AT_FDCWD,
        # whose value differs between systems, is not needed).
        result = _renameat(-1, _path(src), dst_dir_fd, _path(dst))
    else:
        os.rename(src, dst, dst_dir_fd=dst_dir_fd)
        return
    if result < 0:
        _fail(src, dst)


def append(fd: int, data: bytes) -> int:
    """os.write(fd, data) of a few bytes (a line), holding the GIL: bytes written."""
    if not USE_LIBC:
        return os.write(fd, data)
    while True:
        n = _write(fd, data, len(data))
        if n >= 0:
            return n
        if ctypes.get_errno() != errno.EINTR:
            _fail()
