"""Spooled APPEND literals written to their temporary files in the durable-I/O service.

The command reader queues a large literal's chunks in its `LiteralFile` as they arrive (it is
pure); the session hands each literal to a `LiteralSpooler`, which writes the queue in the
durable pool, one job at a time per literal so that its chunks land in order (the pool has
many threads).  The first job creates the file; the one that writes the last chunk rewinds
it.  Memory stays bounded: `backlog` (octets read, not yet written) tells the connection to
stop reading from the client above SPOOL_BACKLOG, and `drained` is called as it falls again.
A literal whose command is dropped, whose client goes, or whose write fails is closed in the
pool (a temporary file without a name: closing it frees it) and nothing is left behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.imap.parser import LiteralFile

log = Logger(namespace="mailsuite.imap")

# Octets of spooled literals read from the client but not written yet, above which the
# connection stops reading from its socket until the durable pool has caught up.
SPOOL_BACKLOG = 4 * 1024 * 1024


class _Spool:
    """One literal's writing state, kept on the reactor thread."""

    __slots__ = ("literal", "writing", "written", "error", "dropped", "closed")

    def __init__(self, literal: LiteralFile):
        self.literal = literal
        self.writing = 0  # octets of the job in the pool; 0: no job runs
        self.written = False  # the last chunk is on disk and the file rewound
        self.error: BaseException | None = None
        self.dropped = False  # its command was refused, or its client went
        self.closed = False  # its closing was handed to the pool


class LiteralSpooler:
    """The spooled literals of the command a connection is reading."""

    def __init__(self, io, drained: Callable[[], None]):
        self._io = io  # the durable-I/O service (DurableIO.submit)
        self._drained = drained
        self.spools: list[_Spool] = []
        self._waiting: list[defer.Deferred] = []

    @property
    def backlog(self) -> int:
        """Octets read from the client and not written yet."""
        return sum(s.literal.pending_bytes + s.writing for s in self.spools)

    # -- the reader's side ---------------------------------------------------------------------
    def track(self, literals: list[LiteralFile]) -> None:
        """Literals the reader began spooling, in the order they were announced."""
        self.spools.extend(_Spool(literal) for literal in literals)

    def write(self) -> None:
        """Start a job for every literal with chunks waiting and none running."""
        for spool in list(self.spools):
            self._step(spool)

    def drop(self) -> None:
        """The command was refused: its literals are never stored."""
        for spool in list(self.spools):
            spool.dropped = True
            self._step(spool)
        self._waiting = []

    def abort(self) -> None:
        """The client went: drop everything, and call nobody back (the jobs still running
        refer to this spooler only, so the session is freed at once)."""
        self._drained = _nothing
        self.drop()

    # -- the command's side --------------------------------------------------------------------
    def ready(self) -> defer.Deferred | None:
        """None when every literal of the command is on disk (or failed); else a Deferred
        that fires then."""
        self.write()
        if self._settled():
            return None
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def claim(self) -> tuple[list[LiteralFile], BaseException | None]:
        """Hand the literals to their command (forgotten here), with the first write error:
        then the command must not run, and the literals are closed."""
        spools = [s for s in self.spools if not s.dropped]
        # a refused command's literal still being written stays until its job ends
        self.spools = [s for s in self.spools if s.dropped]
        error = next((s.error for s in spools if s.error is not None), None)
        if error is not None:
            for spool in spools:
                self._close(spool)
        return [s.literal for s in spools], error

    def close(self, literals: list[LiteralFile]) -> None:
        """Close, in the pool, the literals a command left open (one refused before it read
        them)."""
        still_open = [lit for lit in literals if lit.file is not None and not lit.file.closed]
        if still_open:
            self._io.submit(_close, still_open)

    # -- internals -----------------------------------------------------------------------------
    def _step(self, spool: _Spool) -> None:
        if spool.writing:
            return  # its job's end steps it again
        literal = spool.literal
        if spool.error is not None or spool.dropped or literal.abandoned:
            literal.take_pending()  # read from the client to stay in step, never stored
            self._close(spool)
            if spool.dropped or literal.abandoned:
                self.spools.remove(spool)
            return
        if spool.written:
            return
        if literal.pending or literal.file is None or literal.complete:
            final = literal.complete
            chunks = literal.take_pending()
            spool.writing = max(1, sum(map(len, chunks)))
            d = self._io.submit(_write, literal, chunks, final)
            d.addCallbacks(self._wrote, self._failed, (spool, final), None, (spool,))

    def _wrote(self, _, spool: _Spool, final: bool) -> None:
        spool.writing = 0
        spool.written = final
        self._next(spool)

    def _failed(self, failure, spool: _Spool) -> None:
        if isinstance(failure.value, OSError):
            log.info("spooling an APPEND literal failed: {err}", err=str(failure.value))
        else:
            log.failure("spooling an APPEND literal failed", failure=failure)
        spool.writing = 0
        spool.error = failure.value
        self._next(spool)

    def _next(self, spool: _Spool) -> None:
        if spool in self.spools:
            self._step(spool)
        if self.backlog <= SPOOL_BACKLOG:
            self._drained()
        if self._waiting and self._settled():
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def _settled(self) -> bool:
        return all(
            s.dropped or (not s.writing and (s.written or s.error is not None)) for s in self.spools
        )

    def _close(self, spool: _Spool) -> None:
        if not spool.closed:
            spool.closed = True
            self._io.submit(_close, [spool.literal])


def _nothing() -> None:
    pass


def _write(literal: LiteralFile, chunks: list[bytes], final: bool) -> None:
    """One job: create the file (the first), append the chunks, rewind it (the last)."""
    if literal.file is None:
        # Unnamed where the system allows it, unlinked at once elsewhere: closing the file
        # (or the process ending) frees it, nothing is left to clean up.
        literal.file = tempfile.TemporaryFile(prefix="mailsuite-append-")
    literal.file.writelines(chunks)
    if final:
        literal.file.flush()
        literal.file.seek(0)


def _close(literals: list[LiteralFile]) -> None:
    for literal in literals:
        literal.close()
