"""The Twisted adapter of the IMAP session: the socket's bytes into `Session.receive`, the
session's replies out to the transport (optionally DEFLATE-compressed, RFC 4978), TLS,
back-pressure through a registered producer, the autologout timer and the connection limit.
Big message bodies in the replies (`MessageLiteral`) are streamed from their files by
`LiteralStream`; what the session writes meanwhile waits behind them, in order.

Fairness and memory: the session runs a bounded number of commands per call and yields; the
adapter resumes it on a later reactor turn. Input waiting for the session is bounded: past
INPUT_BUFFER the socket is not read, and compressed input is inflated INFLATE_STEP bytes at a
time, only while the session has room for it, so a deflate bomb is never held inflated.

Thin on purpose: framing lives in `parser`, the protocol state machine in `session`, behaviour
in `commands`.
"""

from __future__ import annotations

import socket
import zlib

from twisted.internet import defer, protocol, reactor
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from mailsuite import heap
from mailsuite.imap import response as R
from mailsuite.imap.literal import MessageLiteral
from mailsuite.imap.literal_spool import SPOOL_BACKLOG
from mailsuite.imap.literal_stream import LiteralStream
from mailsuite.imap.session import Session
from mailsuite.imap.states import NOT_AUTHENTICATED
from mailsuite.limits import PER_ADDRESS, AdmittedConnection
from mailsuite.listener import SessionFactory
from mailsuite.transport import gathered_writes, unregister_producer

log = Logger(namespace="mailsuite.imap")

# Unprocessed input held for one connection (beyond one command line) before we stop reading
# from its socket while its commands wait (a running command, unread output, the next turn).
INPUT_BUFFER = 64 * 1024
# Bytes inflated from a COMPRESS stream at once (zlib's max_length), one step per turn.
INFLATE_STEP = 64 * 1024


@implementer(IPushProducer)
class _WriteGate:
    """Registered as the transport's producer so big FETCHes pause when the peer is slow:
    a streaming literal waits, and so do the session's commands (`waiters`) until the
    transport is drained and no literal is streaming."""

    def __init__(self):
        self.paused = False
        self.stream: LiteralStream | None = None
        self.waiters: list[defer.Deferred] = []

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self.stream is not None:
            self.stream.resume()
        self.release()

    def release(self) -> None:
        """Fire the waiters if the output is drained: not paused, nothing streaming."""
        if self.paused or self.stream is not None:
            return
        waiters, self.waiters = self.waiters, []
        for d in waiters:
            d.callback(None)

    def stopProducing(self):
        self.end_stream()
        self.resumeProducing()

    def end_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.stop()


class ImapProtocol(protocol.Protocol, AdmittedConnection):
    streams_literals = True  # write_sequence takes MessageLiterals (session.Connection)

    def __init__(self, services, kind: str):
        self.services = services
        self.kind = kind
        self.session: Session | None = None
        self.closed = False
        self._tls_started = kind == "imaps"
        self._inflate = None
        self._deflate = None
        self._timeout = None
        self._gate = _WriteGate()
        self._compressed = b""  # DEFLATE input not inflated yet (zlib's unconsumed tail)
        self._turn = None  # the call that resumes the session on the next reactor turn
        self._reading_paused = False
        self._input_limit = INPUT_BUFFER + services.config.imap.max_command_line
        self._idle_seconds = services.config.imap.idle_timeout
        self._queued: list = []  # output written while a literal streams, sent after it

    # -- connection ---------------------------------------------------------------------------
    def connectionMade(self):
        peer = self.transport.getPeer()
        ip = getattr(peer, "host", "")
        sock = self._socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.transport.registerProducer(self._gate, True)
        self.services.metrics.connected(self.kind)
        self.session = Session(self.services, self.services.imap, self, self.kind, ip)
        if not self._admit(ip):
            return
        self.session.greet()
        self._reset_timeout()

    def connectionLost(self, reason=None):
        self.closed = True
        self.services.metrics.disconnected(self.kind)
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None
        self.give_back_slot()
        self._queued = []
        self._gate.end_stream()
        self._gate.resumeProducing()
        # Under TLS the transport's producer wrapper and this protocol refer to each other.
        unregister_producer(self.transport)
        self._let_go()
        heap.release_soon()

    def _let_go(self) -> None:
        """Drop the session and the stream state: under TLS the protocol and its transport
        refer to each other, and what they hold would otherwise wait for the cycle collector."""
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._turn = None
        self._compressed = b""
        self._inflate = self._deflate = None
        session, self.session = self.session, None
        if session is not None:
            session.connection_lost()

    def is_secure(self) -> bool:
        return self._tls_started

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            # TLS waits for a registered producer to go before it sends close_notify.
            unregister_producer(self.transport)
            self._queued = []
            self._gate.end_stream()
            self._gate.resumeProducing()
            self.transport.loseConnection()

    # -- the connection's slot and its deadline (mailsuite.limits) ----------------------------
    def _admit(self, ip: str) -> bool:
        refusal = self.take_slot(getattr(self.services, "connections", None), ip)
        if refusal is not None:
            # RFC 5530 [UNAVAILABLE]: a temporary condition; the text says which limit.
            if refusal == PER_ADDRESS:
                text = "Too many connections from your address"
            else:
                text = "Too many connections to this server, try again later"
            self.write_sequence([R.untagged(f"BYE [UNAVAILABLE] {text}")])
            self.close()
            return False
        self.start_deadline(self.services.config.imap.login_deadline, self._login_deadline)
        return True

    def is_established(self) -> bool:
        return self.session is not None and self.session.state != NOT_AUTHENTICATED

    def evict(self) -> None:
        self.write_sequence([R.untagged("BYE [UNAVAILABLE] Server busy, closing idle connection")])
        self.close()

    def _login_deadline(self) -> None:
        if self.closed or self.is_established():
            return
        log.info("imap {ip}: login deadline passed", ip=self.session.client_ip)
        self.write_sequence([R.untagged("BYE No login in time")])
        self.close()

    # -- timeouts -----------------------------------------------------------------------------
    def _reset_timeout(self) -> None:
        self.note_input()
        # RFC 3501 §5.4: an autologout timer of at least 30 minutes (config.imap.idle_timeout).
        timer = self._timeout
        if timer is not None and timer.active():
            timer.reset(self._idle_seconds)
        else:
            self._timeout = reactor.callLater(self._idle_seconds, self._timed_out)

    def _timed_out(self) -> None:
        self._timeout = None
        self.write_sequence([R.untagged("BYE Autologout; idle for too long")])
        self.close()

    # -- input --------------------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        if self.closed:
            return
        self._reset_timeout()
        if self._inflate is None:
            self.session.receive(data)
            return
        self._compressed = self._compressed + data if self._compressed else data
        if self._has_room():
            self._inflate_step()
        else:
            self.processed()

    def _inflate_step(self) -> None:
        """Inflate at most INFLATE_STEP bytes into the session; the rest of the compressed
        input waits (paused reading) for a later turn."""
        try:
            data = self._inflate.decompress(self._compressed, INFLATE_STEP)
        except zlib.error:
            log.info("bad DEFLATE data from client; closing")
            self.close()
            return
        self._compressed = self._inflate.unconsumed_tail
        if data:
            self.session.receive(data)
        else:
            self.processed()

    def _has_room(self) -> bool:
        """The session may take more input now: it is waiting for input, or what it holds
        unprocessed is under the bound."""
        session = self.session
        if session.spooler.spools and session.spooler.backlog > SPOOL_BACKLOG:
            return False  # a big literal arrives faster than the durable pool writes it
        return not session.held or session.reader.buffered() < self._input_limit

    # -- flow control ------------------------------------------------------------------------
    def processed(self) -> None:
        """After each run of the session: read from the socket only while the session has
        room, and come back on the next reactor turn if it yielded or compressed input waits."""
        if self.closed or self.session is None:
            return
        room = self._has_room()
        self._pause_reading(bool(self._compressed) or not room)
        if self._turn is None and (self.session.yielded or (self._compressed and room)):
            self._turn = reactor.callLater(0, self._next_turn)

    def _next_turn(self) -> None:
        self._turn = None
        if self.closed or self.session is None:
            return
        if self._compressed and self._has_room():
            self._inflate_step()
        else:
            self.session.pump()

    def _pause_reading(self, pause: bool) -> None:
        if pause != self._reading_paused:
            self._reading_paused = pause
            if pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    def quick_ack(self) -> None:
        """ACK a literal's data at once: clients (imaplib among them) send the literal and its
        closing CRLF in two writes, and Nagle holds the CRLF until the literal is ACKed, which
        a delayed ACK postpones by 40 ms per APPEND.  Linux only; re-armed per read."""
        quickack = getattr(socket, "TCP_QUICKACK", None)
        if quickack is None:
            return
        sock = self._socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
            except OSError:
                pass

    def _socket(self):
        """The TCP socket under the transport (under the TLS layer on port 993)."""
        transport = self.transport
        for _ in range(3):
            if transport is None:
                return None
            try:
                handle = transport.getHandle()
            except AttributeError:
                handle = None
            if isinstance(handle, socket.socket):
                return handle
            # After STARTTLS the TCP transport's handle is the TLS connection; its socket
            # attribute is still the socket.
            sock = getattr(transport, "socket", None)
            if isinstance(sock, socket.socket):
                return sock
            transport = getattr(transport, "transport", None)
        return None

    # -- output -------------------------------------------------------------------------------
    def write_sequence(self, chunks: list) -> None:
        """Write replies: bytes, and `MessageLiteral`s streamed from their files.  While a
        literal streams, what comes after it waits, in order."""
        if self.transport is None or getattr(self.transport, "disconnected", False):
            return
        if self._gate.stream is not None:
            self._queued.extend(chunks)
            return
        for i, chunk in enumerate(chunks):
            if type(chunk) is MessageLiteral:
                self._queued = chunks[i + 1 :]
                self._stream(chunk, chunks[:i])
                return
        self._write_now(chunks)

    def _write_now(self, chunks: list) -> None:
        if self._deflate is not None:
            # Piece by piece: a message body is compressed where it lies, not joined first.
            deflate = self._deflate
            out = [deflate.compress(chunk) for chunk in chunks]
            out.append(deflate.flush(zlib.Z_SYNC_FLUSH))
            self._send(out)
        else:
            self._send(chunks)

    def _send(self, pieces: list) -> None:
        """To the transport; under TLS the records of one write leave in one system call
        (`mailsuite.transport.gathered_writes`), not one each."""
        if self._tls_started:
            with gathered_writes(self.transport):
                self.transport.writeSequence(pieces)
        else:
            self.transport.writeSequence(pieces)

    def _stream(self, literal: MessageLiteral, lead: list) -> None:
        if self.closed:
            return
        gate = self._gate
        gate.stream = LiteralStream(
            literal,
            self.services.store.io,
            self._send,
            lambda: gate.paused,
            self._deflate,
            lead,
            self._streamed,
            self._stream_failed,
            self.services.imap.wire_positions,
        )
        gate.stream.start()

    def _streamed(self, last: list) -> None:
        """The literal is out but for its last piece: send that with what waited behind it
        (the rest of the response, the tagged reply), then the next literal, if any."""
        self._gate.stream = None
        queued, self._queued = self._queued, []
        if self._deflate is not None:
            self._send(last)  # compressed by the stream already
            last = []
        self.write_sequence(last + queued)
        self._gate.release()

    def _stream_failed(self) -> None:
        self._gate.stream = None
        self._queued = []
        self.transport.abortConnection()

    def writable(self) -> bool:
        gate = self._gate
        return (not gate.paused and gate.stream is None) or self.closed

    def wait_writable(self) -> defer.Deferred:
        if self.writable():
            return defer.succeed(None)
        gate = self._gate
        d = defer.Deferred()
        gate.waiters.append(d)
        return d

    # -- stream changes -----------------------------------------------------------------------
    def start_tls(self) -> None:
        """RFC 3501 §6.2.1: anything pipelined after STARTTLS is discarded, never run."""
        self.session.reader.clear()
        self.transport.startTLS(self.services.tls.server_options())
        self._tls_started = True

    def start_compression(self) -> None:
        """RFC 4978 §3: DEFLATE (raw, no zlib header) both ways from the next byte on."""
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)
        # What the client pipelined after COMPRESS is already compressed: it is inflated, a
        # step per turn, once this command is done (processed()).
        self._compressed = self.session.reader.take_buffer()


def build_factory(services, kind: str) -> SessionFactory:
    """`kind` is "imap" (port 143, STARTTLS) or "imaps" (993, wrapped in TLS by app.py)."""
    if kind not in ("imap", "imaps"):
        raise ValueError(f"unknown IMAP listener kind {kind!r}")
    return SessionFactory(ImapProtocol, services, kind)
