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
from twisted.python.failure import Failure

_STOP = object()


class PoolStopped(RuntimeError):
    """The pool takes no more work (stopped, or a thread could not be started)."""


class WorkerPool:
    """Up to `size` threads, started as work arrives; `submit` is for the reactor thread."""

    def __init__(self, reactor, size: int = 32, name: str = "durable"):
        self._reactor = reactor
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._busy = 0
        self._lock = threading.Lock()
        self._finished: list[tuple[defer.Deferred, bool, object]] = []
        self._flush_posted = False
        self.stopped = False

    def submit(self, work, *args) -> defer.Deferred:
        """Run work(*args) in a thread: Deferred with its result (or its exception).
        PoolStopped when the pool cannot take it."""
        if self.stopped:
            raise PoolStopped(f"{self._name} pool stopped")
        d = defer.Deferred()
        with self._lock:
            self._busy += 1
            start = self._idle < self._busy and len(self._threads) < self._size
        if start:
            thread = threading.Thread(target=self._run, name=f"{self._name}-{len(self._threads)}")
            thread.daemon = True
            try:
                thread.start()
            except RuntimeError as e:  # the system refused a thread
                with self._lock:
                    self._busy -= 1
                if not self._threads:
                    self.stopped = True
                    raise PoolStopped(str(e)) from e
            else:
                self._threads.append(thread)
        self._jobs.put((d, work, args))
        return d

    def stop(self) -> None:
        """Finish the work already given, then end the threads (blocking, at shutdown)."""
        if self.stopped:
            return
        self.stopped = True
        for _ in self._threads:
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is _STOP:
                return
            d, work, args = job
            try:
                outcome = (d, True, work(*args))
            except BaseException:
                outcome = (d, False, Failure())
            with self._lock:
                self._busy -= 1
                self._finished.append(outcome)
                post = not self._flush_posted
                self._flush_posted = True
            if post:
                self._reactor.callFromThread(self._flush)

    def _flush(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
            self._flush_posted = False
        for d, ok, value in finished:
            if ok:
                d.callback(value)
            else:
                d.errback(value)
