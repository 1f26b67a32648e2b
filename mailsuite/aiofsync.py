"""fsync from the reactor thread without a thread: Linux AIO (IOCB_CMD_FSYNC, Linux 4.18 and
later), with completions signalled on an eventfd that the reactor watches.

Why: a small SMTP delivery is a page-cache write and then two waits for the disk (the file, then
its directory).  Handing the whole delivery to the thread pool costs a thread wake-up, a wake-up
of the reactor when it is done, and a GIL hand-over at every system call the worker makes while
the reactor is busy; measured at 10 concurrent SMTP sessions, that cost more than the fsyncs.
With AIO the kernel runs the fsync in its own worker and the reactor only submits it and reads
the completion.  Where AIO is not available (not Linux, or io_setup refused, as some container
seccomp profiles do) each fsync runs in the thread pool instead; the caller cannot tell.

mailsuite.durable uses this where io_uring (mailsuite.uring, which also takes the creates and
renames off the reactor) is not available.  Only ever used from the reactor thread.
"""

from __future__ import annotations

import ctypes
import os
import sys

from twisted.internet import defer, reactor, threads
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

log = Logger(namespace="mailsuite.aiofsync")

# io_setup, io_destroy, io_getevents, io_submit: x86-64 and arm64 (asm-generic) numbers.
_SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
_IOCB_CMD_FSYNC = 2
_IOCB_FLAG_RESFD = 1
_QUEUE_DEPTH = 512
_EVENTS = 64


class _IOCB(ctypes.Structure):
    # struct iocb from linux/aio_abi.h, little-endian layout.
    _fields_ = [
        ("aio_data", ctypes.c_uint64),
        ("aio_key", ctypes.c_uint32),
        ("aio_rw_flags", ctypes.c_int32),
        ("aio_lio_opcode", ctypes.c_uint16),
        ("aio_reqprio", ctypes.c_int16),
        ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64),
        ("aio_nbytes", ctypes.c_uint64),
        ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64),
        ("aio_flags", ctypes.c_uint32),
        ("aio_resfd", ctypes.c_uint32),
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


@implementer(IReadDescriptor)
class AioFsync:
    """One AIO context and its eventfd, registered with the reactor as a reader."""

    def __init__(self):
        machine = os.uname().machine
        if not sys.platform.startswith("linux") or machine not in _SYSCALLS:
            raise OSError(f"no Linux AIO on {sys.platform}/{machine}")
        self._setup, self._destroy, self._getevents, self._submit = _SYSCALLS[machine]
        # PyDLL: the calls keep the GIL.  Submitting and collecting never block, and letting
        # go of the GIL for them would only hand it to a busy worker thread for a while.
        self._libc = ctypes.PyDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        self._ctx = ctypes.c_ulong(0)
        if self._libc.syscall(self._setup, _QUEUE_DEPTH, ctypes.byref(self._ctx)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"io_setup: {os.strerror(err)}")
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._pending: dict[int, defer.Deferred] = {}
        self._next = 0
        self._events = (_Event * _EVENTS)()
        self._no_wait = (ctypes.c_long * 2)(0, 0)
        reactor.addReader(self)

    def close(self) -> None:
        """Stop watching completions and release the context (pending fsyncs are abandoned)."""
        reactor.removeReader(self)
        self._libc.syscall(self._destroy, self._ctx)
        os.close(self._efd)

    def fileno(self) -> int:
        return self._efd

    def logPrefix(self) -> str:
        return "aiofsync"

    def connectionLost(self, reason) -> None:
        pass

    def fsync(self, fds: list[int]) -> list[defer.Deferred]:
        """Submit one fsync per descriptor, all in one system call."""
        iocbs = []
        for fd in fds:
            self._next += 1
            iocbs.append(
                _IOCB(
                    aio_data=self._next,
                    aio_lio_opcode=_IOCB_CMD_FSYNC,
                    aio_fildes=fd,
                    aio_flags=_IOCB_FLAG_RESFD,
                    aio_resfd=self._efd,
                )
            )
        batch = (ctypes.POINTER(_IOCB) * len(iocbs))(*(ctypes.pointer(i) for i in iocbs))
        submitted = max(self._libc.syscall(self._submit, self._ctx, len(iocbs), batch), 0)
        result = []
        for i, (fd, iocb) in enumerate(zip(fds, iocbs, strict=True)):
            if i < submitted:
                d = self._pending[iocb.aio_data] = defer.Deferred()
            else:
                # EAGAIN (queue full) or a file this kernel cannot fsync asynchronously.
                d = threads.deferToThread(os.fsync, fd)
            result.append(d)
        return result

    def doRead(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:
            return
        while self._pending:
            got = self._libc.syscall(
                self._getevents, self._ctx, 0, _EVENTS, self._events, self._no_wait
            )
            for event in self._events[: max(got, 0)]:
                d = self._pending.pop(event.data, None)
                if d is None:
                    continue
                if event.res < 0:
                    d.errback(OSError(-event.res, os.strerror(-event.res)))
                else:
                    d.callback(None)
            if got < _EVENTS:
                break


_backend: AioFsync | None | bool = None

# Up to this size the files of a delivery are created and written on the reactor thread.
SMALL_WRITE = 256 * 1024


def write_files(size: int, write, *args) -> defer.Deferred:
    """Run `write(*args)` (the unsynced file creation and writing of a delivery): here for
    `size` up to SMALL_WRITE, in the thread pool above.

    Creating a small file is a metadata operation like a rename; under a full fsync load it can
    wait for a journal commit (measured: median 0.3 ms, worst seen 3 ms), which still costs the
    reactor less than a hand-over to a worker thread and back for every message (measured: 16 %
    more SMTP deliveries per second at 10 sessions).  Large messages are copied in a thread."""
    if size <= SMALL_WRITE:
        return defer.maybeDeferred(write, *args)
    return threads.deferToThread(write, *args)


def fsync(*fds: int) -> defer.Deferred:
    """Deferred firing when every descriptor is fsynced (the first OSError otherwise); keep
    them open until then."""
    global _backend
    if _backend is None:
        try:
            _backend = AioFsync()
        except OSError as e:
            log.info("fsync runs in the thread pool (no Linux AIO: {err})", err=str(e))
            _backend = False
    if _backend:
        pending = _backend.fsync(list(fds))
    else:
        pending = [threads.deferToThread(os.fsync, fd) for fd in fds]
    if len(pending) == 1:
        return pending[0]
    return defer.DeferredList(pending, consumeErrors=True).addCallback(_first_failure)


def _first_failure(results):
    for ok, value in results:
        if not ok:
            return value
    return None


def fsync_dir(*paths: str) -> defer.Deferred:
    """Make creations and renames in the directories `paths` durable (the asynchronous
    mailsuite.durable.fsync_dir)."""
    opened = []
    try:
        for path in paths:
            opened.append(os.open(path, os.O_RDONLY | os.O_DIRECTORY))
    except OSError:
        for fd in opened:
            os.close(fd)
        return defer.fail()

    def close(result):
        for fd in opened:
            os.close(fd)
        return result

    return fsync(*opened).addBoth(close)
