"""Sends one `MessageLiteral` to the client from the message file, a chunk at a time, as the
transport drains.

Reads, the LF→CRLF conversion and (under COMPRESS) the DEFLATE step run in the durable-I/O
service's threads, CHUNKS_PER_JOB chunks per job, each handed to the reactor as soon as it is
made; the reactor never waits on the disk and only writes, and it sends one chunk while the next
is made (the socket send and zlib release the GIL).  The connection's registered producer
pauses the stream when the transport holds more than its buffer and resumes it when that is
sent; no job starts while paused, so a connection holds about one job's chunks plus what the
transport holds, whatever the message's size.  `on_done` gets the last chunk's bytes, to be
written with what follows the literal."""

from __future__ import annotations

import os
import zlib
from collections import deque
from collections.abc import Callable

from twisted.logger import Logger

from mailsuite.imap.literal import MessageLiteral, WireCursor, WirePositions

log = Logger(namespace="mailsuite.imap")

# Stored bytes read and converted at a time, and chunks made per job in the durable pool: each
# chunk goes to the reactor as soon as it is made and is sent while the next one is made; a job
# of two spares thread hops.  A paused stream holds at most one job's chunks.  (Measured on
# 20 MB bodies: 256 KiB x 2 sent faster than 128 KiB x 4 or 512 KiB x 2 at the same CPU.)
CHUNK = 256 * 1024
CHUNKS_PER_JOB = 2


class BodyVanished(Exception):
    """The message file ended before the count the literal announced."""


class LiteralStream:
    """One literal on its way out; see the module docstring.

    `io` is the durable-I/O service (`submit`, `call_soon`); `write(pieces)` hands bytes to
    the transport as they are; `paused()` says whether the transport wants no more for now;
    `deflate` is the connection's compressor under COMPRESS (used only by the stream's jobs
    until `on_done` is called); `lead` is output to send before the literal.
    """

    def __init__(
        self,
        literal: MessageLiteral,
        io,
        write: Callable[[list], None],
        paused: Callable[[], bool],
        deflate,
        lead: list[bytes],
        on_done: Callable[[list], None],
        on_failed: Callable[[], None],
        positions: WirePositions | None = None,
    ):
        self.literal = literal
        self._positions = positions
        self._io = io
        self._write = write
        self._paused = paused
        self._deflate = deflate
        self._lead = lead
        self._on_done = on_done
        self._on_failed = on_failed
        self._fd: int | None = None
        self._cursor = WireCursor()
        self._file_pos = 0
        self._start, self._end = literal.bounds()
        self._reading = False  # a job is running
        self._read_all = False  # the last chunk has been made
        self._ready: deque[tuple[list, bool]] = deque()
        self._stopped = False
        self._retried = False
        self._mark: tuple[int, int, bool] = (0, 0, False)  # where the last chunk began
        self._from_file = False  # chunks were read (not the whole file, not NIL)
        msg = literal.msg
        self._key = (str(literal.folder.path), msg.key, msg.size)

    # -- reactor side ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._positions is not None and self._start:
            mark = self._positions.before(self._key, self._start)
            if mark is not None:
                self._file_pos, self._cursor.wire_pos, self._cursor.after_cr = mark
        self._run(opening=True)

    def resume(self) -> None:
        """The transport drained: write what is ready, read on."""
        self._pump()

    def stop(self) -> None:
        """The connection is gone: give the file back (once a job in flight returns)."""
        if self._stopped:
            return
        self._stopped = True
        self._ready.clear()
        if not self._reading:
            self._close()

    def _run(self, opening: bool = False) -> None:
        self._reading = True
        d = self._io.submit(self._produce, opening)
        d.addCallbacks(self._ran, self._failed)

    def _ran(self, opened: bool) -> None:
        self._reading = False
        if self._stopped:
            self._close()
            return
        if not opened:
            # Renamed by a flag change here between our look at its name and the open: the
            # index has its new name; otherwise it is gone.
            if not self._retried:
                self._retried = True
                self._run(opening=True)
                return
            log.info(
                "imap: message {uid} gone before its body was sent; answered NIL",
                uid=self.literal.msg.uid,
            )
            self._read_all = True
            self._ready.append((self._deflated(self._lead + [b"NIL"]), True))
        self._pump()

    def _deliver(self, pieces: list, last: bool) -> None:
        if not self._stopped:
            self._ready.append((pieces, last))
            self._pump()

    def _failed(self, failure) -> None:
        self._reading = False
        self._close()
        if self._stopped:
            return
        self._stopped = True
        # The count is out: with the bytes missing the only honest thing left is to close.
        log.failure("imap: streaming a message body failed; closing", failure)
        self._on_failed()

    def _pump(self) -> None:
        ready = self._ready
        while ready and not self._stopped and not self._paused():
            pieces, last = ready.popleft()
            if last:
                self._stopped = True
                self._close()
                if self._positions is not None and self._from_file:
                    self._positions.remember(self._key, self._mark)
                self._on_done(pieces)
                return
            self._write(pieces)
        if not (self._reading or self._read_all or self._stopped or ready or self._paused()):
            self._run()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- jobs in the durable pool: one at a time per stream ------------------------------------
    def _produce(self, opening: bool) -> bool:
        """Make up to CHUNKS_PER_JOB chunks, each handed to the reactor as soon as it is made,
        so that it is sent while the next is made.  The first job opens the file (False when
        there is none by that name) and writes the count."""
        if opening and not self._open():
            return False
        for _ in range(CHUNKS_PER_JOB):
            if self._stopped or self._read_all:
                break
            pieces, last = self._next()
            self._read_all = last
            self._io.call_soon(self._deliver, pieces, last)
        return True

    def _open(self) -> bool:
        lit = self.literal
        # Under the index's name, or the one a queued rename has yet to move it from.
        fd = lit.folder.open_fd(lit.msg)
        if fd is None:
            return False
        try:
            size = os.fstat(fd).st_size
            if size != lit.msg.size:
                # The index's sizes do not describe this file (an edit behind our back): the
                # count must come from the bytes themselves, so they are read whole.
                self._read_all = True
                self._io.call_soon(self._deliver, *self._whole(fd))
                os.close(fd)
                return True
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._from_file = True
        self._lead.append(b"{%d}\r\n" % (self._end - self._start))
        return True

    def _whole(self, fd: int) -> tuple[list, bool]:
        parts = []
        while piece := os.read(fd, 1 << 20):
            parts.append(piece)
        wire = WireCursor().feed(b"".join(parts))
        origin, length = self.literal.origin, self.literal.length
        data = wire[origin:] if length is None else wire[origin : origin + length]
        data = data.replace(b"\x00", b"\x80") if b"\x00" in data else data
        return self._deflated(self._lead + [b"{%d}\r\n" % len(data), data]), True

    def _next(self) -> tuple[list, bool]:
        """The next chunk's wire bytes that fall in the literal's range, and whether it was the
        last."""
        pieces, self._lead = self._lead, []
        cursor, start, end = self._cursor, self._start, self._end
        while cursor.wire_pos < end:
            self._mark = (self._file_pos, cursor.wire_pos, cursor.after_cr)
            raw = os.pread(self._fd, CHUNK, self._file_pos)
            if not raw:
                raise BodyVanished(f"message file ended at {self._file_pos} bytes")
            self._file_pos += len(raw)
            first = cursor.wire_pos
            wire = cursor.feed(raw)
            if cursor.wire_pos <= start:
                continue  # before the range (a partial FETCH from far in)
            if b"\x00" in wire:
                # RFC 3501 §4.3: a literal cannot carry NUL; 0x80 stands in, as in Dovecot
                wire = wire.replace(b"\x00", b"\x80")
            lo, hi = max(start - first, 0), min(end - first, len(wire))
            pieces.append(wire if lo == 0 and hi == len(wire) else memoryview(wire)[lo:hi])
            break
        return self._deflated(pieces), cursor.wire_pos >= end

    def _deflated(self, pieces: list) -> list:
        deflate = self._deflate
        if deflate is None:
            return pieces
        out = [deflate.compress(p) for p in pieces]
        out.append(deflate.flush(zlib.Z_SYNC_FLUSH))
        return out
