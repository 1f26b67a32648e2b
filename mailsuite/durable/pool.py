"""The durable service's own worker threads: blocking disk work in, Deferreds out.

A pool apart from the reactor's (which serves password checks and other slow work) so that a
burst of logins never holds deliveries back, nor the reverse.  Finished work is handed back to
the reactor in batches: the threads a group-commit pass releases together post one wake-up of
the reactor between them, not one each.
"""

from __future__ import annotations

import queue
import threading

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="mailsuite.durable")

_STOP = object()
# A thread with nothing to do for this long ends (with it, what it holds per thread: the
# accounts database's connection, for one).
IDLE_SECONDS = 10.0


class PoolStopped(RuntimeError):
    """The pool takes no more work (stopped, or a thread could not be started)."""


class WorkerPool:
    """Up to `size` threads, started as work arrives; `submit` is for the reactor thread."""

    def __init__(self, reactor, size: int = 32, name: str = "durable"):
        self._reactor = reactor
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Work given and not yet finished.  Against the threads' count it says what a count
        # of idle threads and one of work not yet taken would (more work than threads: more
        # work than idle threads), and a thread changes it once per job, in the hold of the
        # lock that hands its result over, not in a second hold when it takes the job.
        self._pending = 0
        # Finished work (Deferred, ok, result) and calls for the reactor (None, fn, args), in
        # the order they came: handed to the reactor together, by one wake-up.
        self._finished: list[tuple] = []
        self._flush_posted = False
        # Set in a worker thread while it runs a job: its call_soon calls wait for the job's
        # result to post the wake-up.
        self._in_job = threading.local()
        self.stopped = False

    def submit(self, work, *args) -> defer.Deferred:
        """Run work(*args) in a thread: Deferred with its result (or its exception).
        PoolStopped when the pool cannot take it."""
        if self.stopped:
            raise PoolStopped(f"{self._name} pool stopped")
        with self._lock:
            self._pending += 1
            thread = None
            running = len(self._threads)
            if self._pending > running and running < self._size:
                thread = threading.Thread(target=self._run, name=f"{self._name}-worker")
                thread.daemon = True
                self._threads.append(thread)
        if thread is not None:
            try:
                thread.start()
            except RuntimeError as e:  # the system refused a thread
                with self._lock:
                    self._threads.remove(thread)
                    alone = not self._threads
                    if alone:
                        self._pending -= 1
                if alone:
                    self.stopped = True
                    raise PoolStopped(str(e)) from e
        d = defer.Deferred()
        self._jobs.put((d, work, args))
        return d

    def call_soon(self, fn, *args) -> None:
        """Run fn(*args) on the reactor thread, with the next batch of finished work; safe
        from any thread.  From a worker thread (inside `work`) it costs no wake-up of its own:
        it rides with the job's result."""
        with self._lock:
            self._finished.append((None, fn, args))
            if getattr(self._in_job, "active", False):
                return  # the job's result, handed over after it, posts the wake-up
            post = not self._flush_posted
            self._flush_posted = True
        if post:
            self._reactor.callFromThread(self._flush)

    def stop(self) -> None:
        """Finish the work already given, then end the threads (blocking, at shutdown)."""
        if self.stopped:
            return
        self.stopped = True
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(_STOP)
        for thread in threads:
            thread.join()

    def _run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._pending < len(self._threads):  # the others cover the work given
                        self._threads.remove(threading.current_thread())
                        return
                continue
            if job is _STOP:
                return
            d, work, args = job
            self._in_job.active = True
            try:
                outcome = (d, True, work(*args))
            except BaseException:
                outcome = (d, False, Failure())
            self._in_job.active = False
            # One hold of the lock per job hands the result over and counts the work done:
            # each hold the reactor's submit or flush may be waiting on costs both a futex
            # round.
            with self._lock:
                self._finished.append(outcome)
                post = not self._flush_posted
                self._flush_posted = True
                self._pending -= 1
            if post:
                self._reactor.callFromThread(self._flush)

    def _flush(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
            self._flush_posted = False
        for d, ok, value in finished:
            if d is None:
                try:
                    ok(*value)
                except Exception:
                    log.failure("durable: a call handed to the reactor failed")
            elif ok:
                d.callback(value)
            else:
                d.errback(value)
