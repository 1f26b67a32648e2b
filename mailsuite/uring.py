"""A delivery's file work handed to the kernel in one system call: io_uring linked chains.

Why: writing a small message durably is create, write, fsync, close, rename, fsync the
directory.  Done from the reactor, the create and the rename wait for the ext4 journal whenever
a commit is under way, which under a full SMTP load is most of the time (measured: a median of
0.4 ms per message on the reactor, a third of its time); done in the thread pool, every message
costs thread hand-overs and GIL contention instead.  With io_uring the reactor writes the whole
sequence into the submission ring as one linked chain and enters the kernel once; the kernel's
own workers run the steps one after the other, and the reactor reads their completions from an
eventfd it watches like a socket.

Only on x86-64 Linux (its ordering of memory lets plain loads and stores of the shared rings
stand in for the barriers liburing uses) and only when a probe chain at start works; otherwise
`Ring()` raises OSError and mailsuite.durable writes the old way.  Only ever used from the
reactor thread.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import mmap
import os
import shutil
import struct
import sys
import tempfile

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IReadDescriptor
from zope.interface import implementer

_SYS_SETUP, _SYS_ENTER, _SYS_REGISTER = 425, 426, 427
_OP_FSYNC, _OP_OPENAT, _OP_CLOSE, _OP_READ, _OP_WRITE = 3, 18, 19, 22, 23
_OP_RENAMEAT, _OP_UNLINKAT = 35, 36
_SQE_FIXED_FILE, _SQE_IO_LINK, _SQE_IO_HARDLINK = 1, 4, 8
_SETUP_CQSIZE, _SETUP_CLAMP, _SETUP_SUBMIT_ALL = 1 << 3, 1 << 4, 1 << 7
_SETUP_COOP_TASKRUN = 1 << 8
_FEAT_SINGLE_MMAP = 1
_REGISTER_FILES, _REGISTER_EVENTFD, _REGISTER_IOWQ_MAX_WORKERS = 2, 4, 19
_ENTER_GETEVENTS = 1
_SQ_CQ_OVERFLOW = 2
_OFF_SQ_RING, _OFF_CQ_RING, _OFF_SQES = 0, 0x8000000, 0x10000000
_AT_FDCWD = -100 & 0xFFFFFFFF  # as the u32 `len` field of RENAMEAT carries it

_SQE = struct.Struct("<BBHiQQIIQHHiQQ")  # struct io_uring_sqe, 64 bytes
_CQE = struct.Struct("<QiI")  # struct io_uring_cqe, 16 bytes
_U32 = struct.Struct("<I")
_MASK32 = 0xFFFFFFFF

# Chains in flight at once (one registered file slot each); more wait in a queue.  The
# completion ring holds a completion for every step of every chain in flight.
_SLOTS = 128
_ENTRIES = 256
_CQ_ENTRIES = 4096
# The longest chain: it must fit the submission ring, and its step numbers the 8 bits of
# user_data they are given.
MAX_STEPS = 128
# While chains are in flight the reactor wakes at least this often (seconds); see Ring.__init__.
_NUDGE = 0.02
# Kernel workers that may run file work at once (its default is 4 per CPU): every in-flight
# chain spends most of its life in fsync, and a chain waiting for a worker waits for nothing.
_WORKERS = 64


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


# The steps a chain is made of; paths and data are bytes, kept alive until the chain is done.
def open_new(path: bytes) -> tuple:
    """Create `path` (it must not exist) for writing, as the chain's file."""
    return ("open", path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def open_dir(path: bytes) -> tuple:
    """Open the directory `path` as the chain's file (after the previous one was closed)."""
    return ("open", path, os.O_RDONLY | os.O_DIRECTORY)


def open_read(path: bytes) -> tuple:
    """Open the existing file `path` for reading as the chain's file."""
    return ("open", path, os.O_RDONLY)


def read(buf: bytearray) -> tuple:
    """Read from the start of the chain's file into `buf`, at most its length; the step's
    result is the number of bytes read (a short read is no failure)."""
    return ("read", buf, (ctypes.c_char * len(buf)).from_buffer(buf))


def write(data: bytes) -> tuple:
    """Write all of `data` at the start of the chain's file (a short write fails the chain)."""
    return ("write", data)


FSYNC = ("fsync",)
CLOSE = ("close",)


def rename(src: bytes, dst: bytes) -> tuple:
    return ("rename", src, dst)


def unlink(path: bytes) -> tuple:
    return ("unlink", path)


class ChainFailed(OSError):
    """A chain in which step `step` (an index into its steps) failed with this errno.

    `results` holds every step's result (-ECANCELED for those not run).  The kernel does not
    stop a chain at every kind of failure (a failed rename or fsync lets the next steps run),
    so callers clean up by what each step did, not by where the first failure was."""

    def __init__(self, step: int, err: int, results: list[int], message: str | None = None):
        super().__init__(err, message or os.strerror(err))
        self.step = step
        self.results = results


class _Chain:
    __slots__ = ("steps", "link", "deferred", "slot", "id", "results", "remaining")

    def __init__(self, steps: list[tuple], link: int):
        self.steps, self.link = steps, link
        self.deferred = defer.Deferred()
        self.slot = self.id = -1
        self.results: list[int] = [-errno.ECANCELED] * len(steps)
        self.remaining = len(steps)

    def failure(self) -> ChainFailed | None:
        for i, (step, res) in enumerate(zip(self.steps, self.results, strict=True)):
            if res < 0 and res != -errno.ECANCELED:
                return ChainFailed(i, -res, self.results)
            if step[0] == "write" and 0 <= res != len(step[1]):
                return ChainFailed(i, errno.EIO, self.results, f"short write ({res} bytes)")
        if any(res < 0 for res in self.results):  # cancelled with no failure seen
            return ChainFailed(0, errno.ECANCELED, self.results)
        return None


# Where CPython keeps a bytes object's data (NUL-terminated) inside the object.
_BYTES_DATA = bytes.__basicsize__ - 1


def _address(buf: bytes) -> int:
    # id() plus a fixed offset instead of two ctypes calls per pointer (a tenth of a chain's
    # submission); Ring() checks the offset against ctypes before anything is submitted.
    if type(buf) is not bytes:
        raise TypeError(f"io_uring steps take bytes, not {type(buf).__name__}")
    return id(buf) + _BYTES_DATA


def _ctypes_address(buf: bytes) -> int:
    return ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value or 0


@implementer(IReadDescriptor)
class Ring:
    """One io_uring with a table of registered file slots and an eventfd the reactor watches."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
            raise OSError(errno.ENOSYS, "io_uring is used on x86-64 Linux only")
        sample = os.urandom(16)
        if sys.implementation.name != "cpython" or _address(sample) != _ctypes_address(sample):
            raise OSError(errno.ENOSYS, "bytes objects are not laid out as in CPython")
        # PyDLL: the calls keep the GIL; submitting and reaping never block.
        self._libc = ctypes.PyDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        # The kernel's worker hands each finished request back to this thread to be freed
        # (task work), and by default interrupts the thread for it wherever it is: measured
        # here, ten interrupts per relayed message, each a costly exit of the virtual machine.
        # With COOP_TASKRUN that work waits for the thread's next system call, and the reactor
        # makes many.  Completions themselves are posted by the workers (and signal the
        # eventfd) either way; only those of a chain's steps cancelled after a failure go
        # through task work, so the reactor wakes every _NUDGE seconds while chains are in
        # flight (a wake-up from epoll_wait runs pending task work) rather than wait for
        # an unrelated event.
        flags = _SETUP_CQSIZE | _SETUP_CLAMP | _SETUP_SUBMIT_ALL | _SETUP_COOP_TASKRUN
        params = _Params(flags=flags, cq_entries=_CQ_ENTRIES)
        try:
            self._fd = self._syscall("io_uring_setup", _SYS_SETUP, _ENTRIES, ctypes.byref(params))
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # A kernel before 5.19, without COOP_TASKRUN: interrupted for task work.
            params = _Params(flags=flags & ~_SETUP_COOP_TASKRUN, cq_entries=_CQ_ENTRIES)
            self._fd = self._syscall("io_uring_setup", _SYS_SETUP, _ENTRIES, ctypes.byref(params))
        self._nudge = None
        self._efd = -1
        self._maps: list[mmap.mmap] = []
        try:
            self._map(params)
            slots = (ctypes.c_int32 * _SLOTS)(*([-1] * _SLOTS))
            self._register(_REGISTER_FILES, slots, _SLOTS)
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._register(_REGISTER_EVENTFD, ctypes.byref(ctypes.c_int32(self._efd)), 1)
            try:
                self._register(_REGISTER_IOWQ_MAX_WORKERS, (ctypes.c_uint32 * 2)(_WORKERS, 0), 2)
            except OSError:
                pass  # an older kernel: its default number of workers
        except BaseException:
            self._release()
            raise
        self._free = list(range(_SLOTS))
        self._chains: dict[int, _Chain] = {}
        self._waiting: collections.deque[_Chain] = collections.deque()
        self._next_id = 0
        self._broken = False
        try:
            self._probe()
        except BaseException:
            self._release()
            raise
        reactor.addReader(self)

    # -- set-up ---------------------------------------------------------------------------

    def _call(self, *args) -> int:
        # Every argument as a full register: ctypes would pass a Python int as a C int.
        return self._libc.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))

    def _syscall(self, name: str, *args) -> int:
        result = self._call(*args)
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name}: {os.strerror(err)}")
        return result

    def _register(self, opcode: int, arg, count: int) -> None:
        self._syscall("io_uring_register", _SYS_REGISTER, self._fd, opcode, arg, count)

    def _map(self, p: _Params) -> None:
        sq_size = p.sq_off.array + p.sq_entries * 4
        cq_size = p.cq_off.cqes + p.cq_entries * _CQE.size
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        flags = mmap.MAP_SHARED | mmap.MAP_POPULATE
        if p.features & _FEAT_SINGLE_MMAP:
            sq = cq = mmap.mmap(self._fd, max(sq_size, cq_size), flags, prot, offset=_OFF_SQ_RING)
            self._maps.append(sq)
        else:
            sq = mmap.mmap(self._fd, sq_size, flags, prot, offset=_OFF_SQ_RING)
            self._maps.append(sq)
            cq = mmap.mmap(self._fd, cq_size, flags, prot, offset=_OFF_CQ_RING)
            self._maps.append(cq)
        sqes = mmap.mmap(self._fd, p.sq_entries * _SQE.size, flags, prot, offset=_OFF_SQES)
        self._maps.append(sqes)
        self._sq, self._cq, self._sqes = sq, cq, sqes
        self._sq_tail_at, self._sq_flags_at = p.sq_off.tail, p.sq_off.flags
        self._sq_mask = _U32.unpack_from(sq, p.sq_off.ring_mask)[0]
        self._sq_tail = _U32.unpack_from(sq, p.sq_off.tail)[0]
        self._cq_head_at, self._cq_tail_at = p.cq_off.head, p.cq_off.tail
        self._cq_mask = _U32.unpack_from(cq, p.cq_off.ring_mask)[0]
        self._cqes_at = p.cq_off.cqes
        # The indirection array maps ring position i to SQE i once and for all.
        for i in range(p.sq_entries):
            _U32.pack_into(sq, p.sq_off.array + 4 * i, i)

    def _probe(self) -> None:
        """Run a delivery-shaped chain and a failing one, waiting in the kernel: the opcodes,
        file slots and skipped completions this module needs all work, or OSError."""
        folder = tempfile.mkdtemp(prefix="mailsuite-uring-")
        try:
            src, dst = (os.fsencode(os.path.join(folder, n)) for n in ("a", "b"))
            steps = [open_new(src), write(b"probe"), FSYNC, CLOSE, rename(src, dst)]
            good = self.run([*steps, open_dir(os.fsencode(folder)), FSYNC, CLOSE])
            self._wait(good)
            with open(dst, "rb") as f:
                if f.read() != b"probe":
                    raise OSError(errno.EIO, "io_uring probe: the file was not written")
            missing = os.fsencode(os.path.join(folder, "missing", "c"))
            bad = self.run([open_new(src), write(b"x"), CLOSE, rename(src, missing), CLOSE])
            failure = self._wait(bad, expect_failure=True)
            if not (isinstance(failure, ChainFailed) and failure.step == 3):
                raise OSError(errno.EIO, f"io_uring probe: unexpected failure {failure!r}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _wait(self, d: defer.Deferred, expect_failure: bool = False):
        outcome: list = []
        d.addBoth(outcome.append)
        while not outcome:
            self._syscall("io_uring_enter", _SYS_ENTER, self._fd, 0, 1, _ENTER_GETEVENTS, None, 0)
            self._reap()
        result = outcome[0]
        if isinstance(result, defer.Failure):
            if expect_failure:
                return result.value
            raise result.value
        if expect_failure:
            raise OSError(errno.EIO, "io_uring probe: a failing chain succeeded")
        return result

    def _release(self) -> None:
        if self._nudge is not None and self._nudge.active():
            self._nudge.cancel()
        self._nudge = None
        for m in self._maps:
            m.close()
        self._maps = []
        if self._efd >= 0:
            os.close(self._efd)
        os.close(self._fd)

    def close(self) -> None:
        """Stop watching completions and tear the ring down (chains in flight are abandoned)."""
        reactor.removeReader(self)
        self._release()

    # -- submitting -----------------------------------------------------------------------

    def run(self, steps: list[tuple], keep_going: bool = False) -> defer.Deferred:
        """Run `steps` in order, each after the previous one completed: Deferred[list of the
        steps' results], or a ChainFailed.  With `keep_going` a failed step never stops the
        ones after it."""
        if not 0 < len(steps) <= MAX_STEPS:
            raise ValueError(f"a chain has 1 to {MAX_STEPS} steps, not {len(steps)}")
        chain = _Chain(steps, _SQE_IO_HARDLINK if keep_going else _SQE_IO_LINK)
        if self._broken:
            chain.deferred.errback(ChainFailed(0, errno.EIO, chain.results, "io_uring is off"))
        elif self._free:
            self._submit(chain, self._free.pop())
        else:
            self._waiting.append(chain)
        return chain.deferred

    def _submit(self, chain: _Chain, slot: int) -> None:
        if self._nudge is None:
            self._nudge = reactor.callLater(_NUDGE, self._nudged)
        self._next_id += 1
        chain.id, chain.slot = self._next_id, slot
        self._chains[chain.id] = chain
        # Every step posts its completion: a failed rename or fsync is not marked as a failure
        # for the link, so with IOSQE_CQE_SKIP_SUCCESS it would pass unseen.
        last = len(chain.steps) - 1
        tail = self._sq_tail
        for i, step in enumerate(chain.steps):
            # The kernel takes a short read for a failure and cancels the rest of a plain
            # link; reading less than the buffer holds is what a read is for here.
            flags = 0 if i == last else _SQE_IO_HARDLINK if step[0] == "read" else chain.link
            self._put(tail, step, flags, slot, chain.id << 8 | i)
            tail = (tail + 1) & _MASK32
        self._enter(tail, len(chain.steps), chain)

    def _put(self, tail: int, step: tuple, flags: int, slot: int, user_data: int) -> None:
        kind = step[0]
        # Fields: opcode, flags, ioprio, fd, off/addr2, addr, len, op_flags, user_data,
        # buf_index, personality, file_index, addr3, pad.
        if kind == "open":
            fields = (_OP_OPENAT, flags, 0, -100, 0, _address(step[1]), 0o600, step[2])
            tail_fields = (user_data, 0, 0, slot + 1, 0, 0)
        elif kind == "write":
            data = step[1]
            fields = (_OP_WRITE, flags | _SQE_FIXED_FILE, 0, slot, 0, _address(data), len(data), 0)
            tail_fields = (user_data, 0, 0, 0, 0, 0)
        elif kind == "read":
            addr, size = ctypes.addressof(step[2]), len(step[1])
            fields = (_OP_READ, flags | _SQE_FIXED_FILE, 0, slot, 0, addr, size, 0)
            tail_fields = (user_data, 0, 0, 0, 0, 0)
        elif kind == "fsync":
            fields = (_OP_FSYNC, flags | _SQE_FIXED_FILE, 0, slot, 0, 0, 0, 0)
            tail_fields = (user_data, 0, 0, 0, 0, 0)
        elif kind == "close":
            fields = (_OP_CLOSE, flags, 0, 0, 0, 0, 0, 0)
            tail_fields = (user_data, 0, 0, slot + 1, 0, 0)
        elif kind == "unlink":
            fields = (_OP_UNLINKAT, flags, 0, -100, 0, _address(step[1]), 0, 0)
            tail_fields = (user_data, 0, 0, 0, 0, 0)
        elif kind == "rename":
            src, dst = step[1], step[2]
            fields = (_OP_RENAMEAT, flags, 0, -100, _address(dst), _address(src), _AT_FDCWD, 0)
            tail_fields = (user_data, 0, 0, 0, 0, 0)
        else:
            raise ValueError(f"unknown step {kind!r}")
        _SQE.pack_into(self._sqes, (tail & self._sq_mask) * _SQE.size, *fields, *tail_fields)

    def _enter(self, tail: int, count: int, chain: _Chain | None) -> None:
        self._sq_tail = tail
        _U32.pack_into(self._sq, self._sq_tail_at, tail)
        submitted = self._call(_SYS_ENTER, self._fd, count, 0, 0, None, 0)
        if submitted != count:
            # Never seen; the ring's state is no longer known, so it is not used again.
            self._broken = True
            if chain is not None:
                err = ctypes.get_errno() if submitted < 0 else errno.EIO
                failure = ChainFailed(0, err, chain.results, "io_uring submission failed")
                self._finish(chain, failure)

    def _nudged(self) -> None:
        self._nudge = reactor.callLater(_NUDGE, self._nudged) if self._chains else None

    # -- completions ------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._efd

    def logPrefix(self) -> str:
        return "uring"

    def connectionLost(self, reason) -> None:
        pass

    def doRead(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            pass
        self._reap()

    def _reap(self) -> None:
        cq = self._cq
        head = _U32.unpack_from(cq, self._cq_head_at)[0]
        tail = _U32.unpack_from(cq, self._cq_tail_at)[0]
        done = []
        while head != tail:
            user_data, res, _ = _CQE.unpack_from(cq, self._cqes_at + (head & self._cq_mask) * 16)
            done.append((user_data, res))
            head = (head + 1) & _MASK32
        _U32.pack_into(cq, self._cq_head_at, head)
        for user_data, res in done:
            self._completed(user_data, res)
        if _U32.unpack_from(self._sq, self._sq_flags_at)[0] & _SQ_CQ_OVERFLOW:
            self._call(_SYS_ENTER, self._fd, 0, 0, _ENTER_GETEVENTS, None, 0)
            self._reap()

    def _completed(self, user_data: int, res: int) -> None:
        chain = self._chains.get(user_data >> 8)
        if chain is None:
            return  # a clean-up close
        chain.results[user_data & 0xFF] = res
        chain.remaining -= 1
        if not chain.remaining:
            self._finish(chain, chain.failure())

    def _finish(self, chain: _Chain, failure: ChainFailed | None) -> None:
        self._chains.pop(chain.id, None)
        if failure is not None and not self._broken:
            # The chain may have stopped with its file still open in the slot.
            tail = self._sq_tail
            self._put(tail, CLOSE, 0, chain.slot, 0)
            self._enter((tail + 1) & _MASK32, 1, None)
        self._free.append(chain.slot)
        while self._waiting and self._free and not self._broken:
            self._submit(self._waiting.popleft(), self._free.pop())
        if failure is None:
            chain.deferred.callback(chain.results)
        else:
            chain.deferred.errback(failure)
