"""One folder's renames and unlinks: decided on the reactor, done on disk in the durable pool,
in the order they were decided.

A flag change renames a message file (Maildir keeps the flags in its name) and an expunge
unlinks it.  The index changes at once, on the reactor; the file work is queued here and run
one bounded batch at a time per folder, so the reactor never waits on the disk and the disk
sees one folder's operations in order (two sessions' STOREs on one message compose: the second
rename starts from the first one's name).

Until its operations are done, a message's file may still carry an older name: `names(key)`
gives every name it can have (oldest first) to readers in any thread, and `when_done` lets a
command answer only once its own operations are on disk.  Callers without a reactor (the
admin command, imports, tests) run the operations in their own thread at once.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python import threadable

log = Logger(namespace="mailsuite.store")

# Operations per job in the durable pool: an unlink or a rename is ~50 µs, so a batch holds a
# pool thread for a few tens of milliseconds, and a 40,000-message EXPUNGE is forty jobs.
BATCH = 1000

RENAME = "r"
UNLINK = "u"
CALL = "c"  # a blocking call in order with the rest (the folder's dovecot-keywords write)


class Batch:
    """What one run of operations did: the operations (seq, kind, key, path, new path), the
    folder's directory signature just before and just after, and whether any failed (the
    index then no longer matches the disk)."""

    __slots__ = ("ops", "before", "after", "lost")

    def __init__(self, ops: list, before: tuple, after: tuple, lost: bool):
        self.ops, self.before, self.after, self.lost = ops, before, after, lost


class FileOps:
    """The queue of one folder.  `queue_*` and `start` on the owner's thread (the reactor, or
    a blocking caller); the batches run under `lock`, taking operations from the queue's head,
    so whoever runs them (a pool job, a listing, shutdown) keeps the order."""

    def __init__(self, signature: Callable[[], tuple], on_batch: Callable[[Batch], None], io=None):
        self._signature = signature  # the folder's directory signature (blocking: three stats)
        self._on_batch = on_batch  # owner's thread: a settled batch, for the folder's bookkeeping
        self.io = io  # the DurableIO, or None: operations always run in the caller's thread
        self.lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._queued = 0  # sequence number of the last operation queued
        self._done = 0  # of the last one settled
        self._finished: list[Batch] = []  # run, not yet settled
        # Guards `_finished` alone: the reactor takes it to settle, never `lock`, which a
        # batch holds across its system calls.
        self._finished_lock = threading.Lock()
        self._submitted = False  # a job is in the durable pool
        self._waiters: collections.deque = collections.deque()  # (seq, Deferred, result)
        # key -> (operations not settled, the full paths its file can have, oldest first)
        self._names: dict[str, tuple[int, tuple[str, ...]]] = {}

    # -- the owner's thread --------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Operations decided and not yet settled."""
        return self._done < self._queued

    def queue_rename(self, key: str, src: str, dst: str) -> None:
        self._add(RENAME, key, src, dst)

    def queue_unlink(self, key: str, path: str) -> None:
        self._add(UNLINK, key, path, None)

    def queue_call(self, fn: Callable[[], None]) -> None:
        """`fn()` (blocking) in its place among the renames and unlinks."""
        self._queued += 1
        self._queue.append((self._queued, CALL, None, fn, None))

    def _add(self, kind: str, key: str, src: str, dst: str | None) -> None:
        self._queued += 1
        count, names = self._names.get(key, (0, (src,)))
        if names[-1] != src:  # the index's name was not the last one known: keep both
            names += (src,)
        if dst is not None:
            names += (dst,)
        # A new tuple, never changed in place: readers in other threads take it whole.
        self._names[key] = (count + 1, names)
        self._queue.append((self._queued, kind, key, src, dst))

    def start(self) -> None:
        """Get the queued operations going: a job in the durable pool on the reactor, or run
        here, now, for a caller without one (blocking)."""
        if not self._queue:
            return
        if self.io is not None and threadable.isInIOThread():
            if not self._submitted:
                self._submit()
            return
        with self.lock:
            self._run_locked(None, None)
        self.settle()

    def _submit(self) -> None:
        self._submitted = True
        d = self.io.submit(self._run, BATCH)
        d.addErrback(lambda f: log.failure("folder file operations failed", f))
        d.addBoth(self._ran)

    def _ran(self, _) -> None:
        self._submitted = False
        self.settle()
        if self._queue:
            self._submit()

    def settle(self) -> None:
        """Take in the batches run since the last call (in the order they ran): their names
        are forgotten, the folder hears of each, and the commands waiting on them go on.
        Another thread (a blocking listing in the pool) leaves them to the reactor while a
        job of the queue is in flight: its end settles them there."""
        if self._submitted and not threadable.isInIOThread():
            return
        with self._finished_lock:
            finished, self._finished = self._finished, []
        for batch in finished:
            for seq, _, key, src, _ in batch.ops:
                self._done = seq
                if key is None:
                    continue
                count, names = self._names[key]
                if count == 1:
                    del self._names[key]
                else:
                    i = names.index(src)  # the name its file has left
                    self._names[key] = (count - 1, names[:i] + names[i + 1 :])
            self._on_batch(batch)
        while self._waiters and self._waiters[0][0] <= self._done:
            _, d, result = self._waiters.popleft()
            d.callback(result)

    def when_done(self, result=None):
        """`result` once every operation queued so far is on disk: itself when none is
        pending, else a Deferred firing with it.  A Deferred `result` is waited for first,
        then the operations queued by the time it fires."""
        if isinstance(result, defer.Deferred):
            # A new Deferred, not `result` paused on another: a fired one that waits would
            # still say `called`, and the IMAP session takes that for a finished command.
            out = defer.Deferred()

            def then(value) -> None:
                waited = self.when_done(value)
                if isinstance(waited, defer.Deferred):
                    waited.chainDeferred(out)
                else:
                    out.callback(value)

            result.addCallbacks(then, out.errback)
            return out
        if not self.pending:
            return result
        d = defer.Deferred()
        self._waiters.append((self._queued, d, result))
        return d

    def barrier(self) -> int:
        """The sequence number a listing taken now must see done (`ready_for_listing`)."""
        return self._queued

    def finish(self) -> None:
        """Run every queued operation now, in the caller's thread, and settle (blocking:
        shutdown, before the durable pool stops; a job in flight is waited for)."""
        with self.lock:
            self._run_locked(None, None)
        self.settle()

    # -- any thread ----------------------------------------------------------------------------

    def run_queued(self) -> None:
        """Run every queued operation now, in the caller's thread (blocking), leaving their
        settling to the owner (the job in flight settles them on the reactor): a RENAME or
        DELETE of the folder in the durable pool first lets its files take their names."""
        with self.lock:
            self._run_locked(None, None)

    def names(self, key: str) -> tuple[str, ...]:
        """The full paths the file of `key` may have while its operations are pending, oldest
        first (the file moves only forward along them); () when none is pending."""
        entry = self._names.get(key)
        return entry[1] if entry is not None else ()

    @contextmanager
    def ready_for_listing(self, barrier: int):
        """Hold the queue still with every operation up to `barrier` done, for a listing of
        the directories: it then sees what the index held when its names were copied."""
        with self.lock:
            if self._queue and self._queue[0][0] <= barrier:
                self._run_locked(barrier, None)
            yield

    def _run(self, limit: int) -> None:
        with self.lock:
            self._run_locked(None, limit)

    def _run_locked(self, upto: int | None, limit: int | None) -> None:
        """Run operations from the head of the queue (blocking; `lock` held): those up to
        `upto`, at most `limit`."""
        queue = self._queue
        if not queue:
            return
        ran: list[tuple] = []
        lost = False
        before = self._signature()
        after: tuple | None = None
        try:
            while queue and (limit is None or len(ran) < limit):
                op = queue[0]
                if upto is not None and op[0] > upto:
                    break
                queue.popleft()
                ran.append(op)
                lost |= not _apply(op)
            after = self._signature()
        finally:
            # Settled whatever happens: the names it held are forgotten and its waiters go on
            # (an unexpected failure counts as lost: a listing sets the index right).
            if ran:
                batch = Batch(ran, before, after or (), lost or after is None)
                with self._finished_lock:
                    self._finished.append(batch)


def _apply(op: tuple) -> bool:
    """Do one operation; False when the disk did not have what the index expected."""
    _, kind, _, src, dst = op
    try:
        if kind == RENAME:
            os.rename(src, dst)
        elif kind == UNLINK:
            os.unlink(src)
        else:
            src()
        return True
    except FileNotFoundError:
        # An unlink of a file already gone leaves what the index says; a rename's file was
        # removed or renamed by another program: a listing must tell what is there.
        return kind != RENAME
    except OSError as e:
        if kind == CALL:
            log.warn("folder file operation failed: {err}", err=str(e))
            return False
        what = "rename" if kind == RENAME else "remove"
        log.warn("cannot {what} {path}: {err}", what=what, path=src, err=str(e))
        return False


def follow(names: Callable[[], tuple[str, ...]], primary: Callable[[], str], fn):
    """`fn(path)` on the path a message's file has now, following renames queued or running
    (any thread): its own name first, then every name it may have, oldest first, as the file
    moves only forward along them; FileNotFoundError when none has it (gone)."""
    try:
        return fn(primary())
    except FileNotFoundError:
        pass
    for _ in range(3):
        chain = names()
        if not chain:
            break
        for path in chain:
            try:
                return fn(path)
            except FileNotFoundError:
                continue
    return fn(primary())  # the index's name again: a rename may have ended meanwhile
