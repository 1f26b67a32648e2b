"""The opt-in io_uring backend (`[storage] io = "uring"`): a durable write as one linked chain
of steps the kernel runs, entered by the durable pool's thread in one system call.

Why: a durable write is create, write, fsync, close, rename, fsync the folder.  Done as plain
calls from a pool thread, each of those lets go of the GIL and must take it back from the busy
reactor (measured on bench/smtp.py: a delivery's work took 3.2 ms in the pool for about 1 ms of
disk time).  Here the thread writes the chain into the ring and waits for all of it in a single
io_uring_enter, so a delivery takes the GIL back once.

Each pool thread has a ring of its own (`for_this_thread`), used only by that thread, and
always waits in io_uring_enter for every completion of the chain it submitted: the system call
orders the ring's memory both ways, so no other barrier is needed on any architecture.  Linux
only (5.15 or later, for files opened straight into a registered slot); anything unusual turns
the backend off for good and the service goes on with plain calls (DurableIO).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import sys
import threading

# The io_uring system calls have these numbers on every Linux architecture but alpha.
_SYS_SETUP, _SYS_ENTER, _SYS_REGISTER = 425, 426, 427
_OP_FSYNC, _OP_OPENAT, _OP_CLOSE, _OP_WRITE, _OP_RENAMEAT = 3, 18, 19, 23, 35
_SQE_FIXED_FILE, _SQE_IO_LINK = 1, 4
_SETUP_CLAMP = 1 << 4
_FEAT_SINGLE_MMAP = 1
_REGISTER_FILES = 2
_ENTER_GETEVENTS = 1
_OFF_SQ_RING, _OFF_SQES = 0, 0x10000000
_AT_FDCWD = -100
_ENTRIES = 16
_MASK32 = 0xFFFFFFFF

_SQE = struct.Struct("<BBHiQQIIQHHiQQ")  # struct io_uring_sqe, 64 bytes
_CQE = struct.Struct("<QiI")  # struct io_uring_cqe, 16 bytes
_U32 = struct.Struct("<I")

# The registered file slots of a ring: the new file, and a folder opened to be fsynced.
_FILE, _DIR = 0, 1


class RingBroken(OSError):
    """The ring cannot be used (set-up refused, or a submission that did not go in whole):
    the caller does the same work with plain calls instead."""


class ChainFailed(Exception):
    """A step of a durable write failed: `error` is the OSError to report (of the type its
    errno gives, as a plain call would raise), `step` the step's index (0 open, 1 write,
    2 fsync, 3 close, 4 rename, then the folder's fsync), `left_at` where the new file now is
    (its temporary or its final name), None when it was never created."""

    def __init__(self, error: OSError, step: int, left_at: str | None):
        super().__init__(error)
        self.error = error
        self.step = step
        self.left_at = left_at


class _SqOffsets(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint32)
        for name in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped", "array")
    ] + [("resv1", ctypes.c_uint32), ("user_addr", ctypes.c_uint64)]


class _CqOffsets(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint32)
        for name in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes", "flags")
    ] + [("resv1", ctypes.c_uint32), ("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint32)
        for name in (
            "sq_entries",
            "cq_entries",
            "flags",
            "sq_thread_cpu",
            "sq_thread_idle",
            "features",
            "wq_fd",
        )
    ] + [("resv", ctypes.c_uint32 * 3), ("sq_off", _SqOffsets), ("cq_off", _CqOffsets)]


# CDLL: the GIL is let go for the call, which is the point; the syscall's own errno is kept.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
if _libc is not None:
    _libc.syscall.restype = ctypes.c_long


def _syscall(*args) -> int:
    """syscall(2) with every argument passed as a full register; -errno on failure."""
    result = _libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    return -ctypes.get_errno() if result < 0 else result


def _address(buf) -> int:
    """The address of a bytes object's data (public ctypes: no assumption about the layout of
    Python objects); the caller keeps `buf` alive until the chain is done."""
    return ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0


class Ring:
    """One io_uring for one thread: `write_durably` runs a durable write as one chain."""

    def __init__(self) -> None:
        self._fd = -1
        self._maps: list[mmap.mmap] = []
        if _libc is None:
            raise RingBroken(errno.ENOSYS, "io_uring needs Linux")
        params = _Params(flags=_SETUP_CLAMP)
        fd = _syscall(_SYS_SETUP, _ENTRIES, ctypes.byref(params))
        if fd < 0:
            raise RingBroken(-fd, f"io_uring_setup: {os.strerror(-fd)}")
        self._fd = fd
        try:
            if not params.features & _FEAT_SINGLE_MMAP:
                raise RingBroken(errno.ENOSYS, "io_uring without single mmap (Linux < 5.4)")
            self._map(params)
            slots = (ctypes.c_int32 * 2)(-1, -1)
            err = _syscall(_SYS_REGISTER, fd, _REGISTER_FILES, slots, 2)
            if err < 0:
                raise RingBroken(-err, f"io_uring_register: {os.strerror(-err)}")
        except BaseException:
            self.close()
            raise

    def _map(self, p: _Params) -> None:
        size = max(p.sq_off.array + p.sq_entries * 4, p.cq_off.cqes + p.cq_entries * _CQE.size)
        flags, prot = mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE
        self._ring = mmap.mmap(self._fd, size, flags, prot, offset=_OFF_SQ_RING)
        self._maps.append(self._ring)
        self._sqes = mmap.mmap(self._fd, p.sq_entries * _SQE.size, flags, prot, offset=_OFF_SQES)
        self._maps.append(self._sqes)
        self._sq_tail_at, self._sq_mask = p.sq_off.tail, p.sq_entries - 1
        self._sq_tail = _U32.unpack_from(self._ring, self._sq_tail_at)[0]
        self._cq_head_at, self._cq_tail_at = p.cq_off.head, p.cq_off.tail
        self._cq_mask, self._cqes_at = p.cq_entries - 1, p.cq_off.cqes
        # Ring position i always holds SQE i.
        for i in range(p.sq_entries):
            _U32.pack_into(self._ring, p.sq_off.array + 4 * i, i)

    def __del__(self) -> None:
        # A pool thread that ends drops its ring with its thread-local data.
        self.close()

    def close(self) -> None:
        for m in self._maps:
            m.close()
        self._maps = []
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def write_durably(self, tmp: str, data: bytes, final: str | None, dir_fd: int | None) -> None:
        """Create `tmp` (it must not exist), write `data`, fsync, close, rename it to `final`
        (if given; by name in the held folder `dir_fd` if given) and fsync the final name's
        folder.  ChainFailed names the first step that failed and where the file was left
        (the caller removes it); RingBroken: nothing was run, do it the plain way."""
        tmp_b = os.fsencode(tmp)
        where = final if final is not None else tmp
        steps: list[tuple] = [
            (_OP_OPENAT, 0, _AT_FDCWD, 0, _address(tmp_b), 0o600, _O_NEW, _FILE + 1),
            (_OP_WRITE, _SQE_FIXED_FILE, _FILE, 0, _address(data), len(data), 0, 0),
            (_OP_FSYNC, _SQE_FIXED_FILE, _FILE, 0, 0, 0, 0, 0),
            (_OP_CLOSE, 0, 0, 0, 0, 0, 0, _FILE + 1),
        ]
        keep = [tmp_b, data]
        if final is not None:
            if dir_fd is not None:
                dst = os.fsencode(os.path.basename(final))
                new_dir = dir_fd
            else:
                dst, new_dir = os.fsencode(final), _AT_FDCWD
            keep.append(dst)
            # renameat: fd = olddirfd, addr = oldpath, len = newdirfd, addr2 (off) = newpath.
            steps.append(
                (
                    _OP_RENAMEAT,
                    0,
                    _AT_FDCWD,
                    _address(dst),
                    _address(tmp_b),
                    new_dir & _MASK32,
                    0,
                    0,
                )
            )
        if dir_fd is not None:
            steps.append((_OP_FSYNC, 0, dir_fd, 0, 0, 0, 0, 0))
        else:
            folder = os.fsencode(os.path.dirname(where) or ".")
            keep.append(folder)
            steps += [
                (_OP_OPENAT, 0, _AT_FDCWD, 0, _address(folder), 0, _O_DIR, _DIR + 1),
                (_OP_FSYNC, _SQE_FIXED_FILE, _DIR, 0, 0, 0, 0, 0),
                (_OP_CLOSE, 0, 0, 0, 0, 0, 0, _DIR + 1),
            ]
        results = self._run(steps)
        del keep
        failed = next(
            (i for i, res in enumerate(results) if res < 0 and res != -errno.ECANCELED), None
        )
        if failed is None and results[1] != len(data) and results[1] >= 0:
            failed, results[1] = 1, -errno.EIO  # a short write
        if failed is None and any(res < 0 for res in results):
            failed = results.index(-errno.ECANCELED)  # cancelled, no failure seen: not expected
            results[failed] = -errno.EIO
        if failed is None:
            return
        self._close_slots()
        renamed = final is not None and results[4] == 0
        left_at = (final if renamed else tmp) if results[0] >= 0 else None
        err = -results[failed]
        error = OSError(err, os.strerror(err), tmp if failed < 4 else where)
        raise ChainFailed(error, failed, left_at)

    def _close_slots(self) -> None:
        """After a failed chain: close what it left open in the slots (a close on an empty
        slot only fails, harmlessly)."""
        self._run(
            [(_OP_CLOSE, 0, 0, 0, 0, 0, 0, _FILE + 1), (_OP_CLOSE, 0, 0, 0, 0, 0, 0, _DIR + 1)],
            link=False,
        )

    def _run(self, steps: list[tuple], link: bool = True) -> list[int]:
        """Submit `steps` (each linked to the next, unless not `link`) and wait for all their
        completions in one system call; their results in order."""
        if self._fd < 0:
            raise RingBroken(errno.EBADF, "io_uring ring closed")
        tail = self._sq_tail
        last = len(steps) - 1
        for i, (op, flags, fd, off, addr, length, op_flags, file_index) in enumerate(steps):
            if link and i != last:
                flags |= _SQE_IO_LINK
            fields = (op, flags, 0, fd, off, addr, length, op_flags, i, 0, 0, file_index, 0, 0)
            _SQE.pack_into(self._sqes, (tail & self._sq_mask) * _SQE.size, *fields)
            tail = (tail + 1) & _MASK32
        self._sq_tail = tail
        _U32.pack_into(self._ring, self._sq_tail_at, tail)
        count = len(steps)
        results = [-errno.ECANCELED] * count
        to_submit, seen = count, 0
        while seen < count:
            got = _syscall(_SYS_ENTER, self._fd, to_submit, count - seen, _ENTER_GETEVENTS, None, 0)
            if got < 0:
                if got == -errno.EINTR:
                    continue
                self.close()
                raise RingBroken(-got, f"io_uring_enter: {os.strerror(-got)}")
            if to_submit and got != to_submit:
                # Part of the chain went in and part did not: the ring's state is not known.
                self.close()
                raise RingBroken(errno.EIO, "io_uring_enter took part of a chain")
            to_submit = 0
            seen += self._reap(results)
        return results

    def _reap(self, results: list[int]) -> int:
        ring = self._ring
        head = _U32.unpack_from(ring, self._cq_head_at)[0]
        tail = _U32.unpack_from(ring, self._cq_tail_at)[0]
        n = 0
        while head != tail:
            index, res, _ = _CQE.unpack_from(ring, self._cqes_at + (head & self._cq_mask) * 16)
            if index < len(results):
                results[index] = res
                n += 1
            head = (head + 1) & _MASK32
        _U32.pack_into(ring, self._cq_head_at, head)
        return n


# Files opened into a registered slot have no descriptor to inherit: O_CLOEXEC is refused there.
_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)

_local = threading.local()


def for_this_thread() -> Ring:
    """This thread's ring, made at its first use (RingBroken if the system refuses one)."""
    ring = getattr(_local, "ring", None)
    if ring is None or ring._fd < 0:
        ring = _local.ring = Ring()
    return ring
