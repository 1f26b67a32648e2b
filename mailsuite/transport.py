"""TCP transports that send at once when nothing is queued before the data.

Twisted's transports queue every write and send it on the next reactor turn, after asking epoll
to report the socket writable and then asking it to stop: two epoll_ctl calls and a poll round
per reply. Mail protocols are request/response with small replies (an SMTP session is seven of
them), so on a busy server that bookkeeping costs more than the send itself. Here a write goes
straight to the socket when the transport holds no earlier data; whatever the kernel does not take
(or any error) falls back to Twisted's normal buffered path, so ordering, back-pressure for
producers and connection-loss handling stay Twisted's own.  The listeners use the server side;
the relay's SMTP client, which writes its commands and each message the same way, the client
side (through `WriteThroughTCPEndpoint`).  Measured against Twisted's own `tcp.Server`: POP3
RETR of a whole maildrop at about twice the rate (Dovecot's peer falls in between), SMTP about
10 % more messages/s.

Twisted has no public way to do this, so the module reads private state of its transports
(`FileDescriptor.dataBuffer`/`offset`/`_tempDataLen`/`_writeDisconnected`, `Connection._aborting`)
and calls private functions (`_newtls.startTLS`, `Connector._makeTransport`,
`endpoints._WrappingFactory`): pyproject.toml pins Twisted to the releases on which
tests/test_transport.py, which checks each of them by name, has passed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from twisted.internet import _newtls, abstract, defer, endpoints, main, tcp
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

BIG_PIECE = 64 * 1024  # writeSequence: pieces from this size on are not joined with others


# sendmsg: at most this many pieces in one system call (Linux's IOV_MAX is 1024).
MAX_PIECES = 512


def _idle(fd: abstract.FileDescriptor) -> bool:
    """Nothing is queued ahead of new data, and the connection may still send."""
    return not (
        fd._tempDataLen
        or len(fd.dataBuffer) > fd.offset
        or fd.disconnecting
        or not fd.connected
        or fd._writeDisconnected
        or getattr(fd, "_aborting", False)  # abortConnection(): nothing more may leave
    )


def _send_now(fd: abstract.FileDescriptor, data: bytes | memoryview) -> bytes | memoryview:
    """Send what the kernel takes now if nothing is queued ahead of `data`; return the rest."""
    if not _idle(fd):
        return data
    try:
        sent = fd.socket.send(data)
    except OSError:
        # EAGAIN, EINTR or a broken connection: the buffered path retries or reports the loss.
        return data
    return data[sent:] if sent < len(data) else b""


def _send_all_now(fd: abstract.FileDescriptor, pieces: list) -> list:
    """`_send_now` for several pieces in one system call (sendmsg gathers them where they
    lie, nothing is joined); returns what the kernel did not take."""
    if not _idle(fd):
        return pieces
    try:
        sent = fd.socket.sendmsg(pieces)
    except OSError:
        return pieces
    for i, piece in enumerate(pieces):
        if sent < len(piece):
            return ([memoryview(piece)[sent:]] if sent else []) + pieces[i + (1 if sent else 0) :]
        sent -= len(piece)
    return []


def _buffer(fd: abstract.FileDescriptor, data: bytes | memoryview) -> None:
    # Twisted's buffer takes bytes only: what the kernel left of a memoryview (a slice of a
    # streamed chunk) is copied, as a bytes rest would be by slicing.
    abstract.FileDescriptor.write(fd, data if type(data) is bytes else bytes(data))


class _WriteThrough(abstract.FileDescriptor):
    """Write methods used unbound on a TCP connection, both directly and beneath TLS."""

    def write(self, data: bytes | memoryview) -> None:
        if data:
            if self._gathered is not None:
                self._gathered.append(data)
                return
            rest = _send_now(self, data)
            if rest:
                _buffer(self, rest)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        # Small pieces are joined; a big one (a message body) is passed on as it is, not
        # copied into a joined string; all go to the kernel in one system call.
        if self._gathered is not None:
            self._gathered.extend(iovec)
            return
        pieces: list = []
        run: list[bytes] = []
        for piece in iovec:
            if len(piece) < BIG_PIECE:
                run.append(piece)
                continue
            if run:
                pieces.append(run[0] if len(run) == 1 else b"".join(run))
                run = []
            pieces.append(piece)
        if run:
            pieces.append(run[0] if len(run) == 1 else b"".join(run))
        if len(pieces) == 1:
            _WriteThrough.write(self, pieces[0])
            return
        for rest in _send_all_now(self, pieces[:MAX_PIECES]) + pieces[MAX_PIECES:]:
            if rest:
                _buffer(self, rest)


def _send_gathered(fd: abstract.FileDescriptor, pieces: list) -> None:
    for start in range(0, len(pieces), MAX_PIECES):
        group = pieces[start : start + MAX_PIECES]
        for rest in _send_all_now(fd, group):
            if rest:
                _buffer(fd, rest)


@contextmanager
def gathered_writes(transport) -> Iterator[None]:
    """Writes to the TCP connection under `transport` (itself, or beneath its TLS layer) made
    inside the block go to the kernel together when it ends, in one sendmsg.

    Why: a TLS layer writes a record (16 KiB) at a time, and here each write is a system call
    and a TCP segment of its own: 64 of them for a 1 MB body, where one does."""
    fd = transport if isinstance(transport, _WriteThroughConnection) else None
    if fd is None:
        fd = getattr(transport, "transport", None)
    if not isinstance(fd, _WriteThroughConnection) or fd._gathered is not None:
        yield
        return
    fd._gathered = []
    try:
        yield
    finally:
        pieces, fd._gathered = fd._gathered, None
        if pieces:
            _send_gathered(fd, pieces)


class _WriteThroughConnection:
    """The write-through writes for a `tcp.Connection` subclass (mixed in before it)."""

    _gathered: list | None = None  # writes held by gathered_writes

    def write(self, data: bytes) -> None:
        if self.TLS:
            super().write(data)
        else:
            _WriteThrough.write(self, data)

    def writeSequence(self, iovec: Iterable[bytes]) -> None:
        if self.TLS:
            super().writeSequence(iovec)
        else:
            _WriteThrough.writeSequence(self, iovec)

    def startTLS(self, ctx, normal: bool = True) -> None:
        # The TLS layer writes its records through this base class, bypassing write() above.
        _newtls.startTLS(self, ctx, normal, _WriteThrough)


class WriteThroughServer(_WriteThroughConnection, tcp.Server):
    pass


def unregister_producer(transport) -> None:
    """Take the protocol's producer off `transport` if the transport still holds one.  Under
    TLS the producer wrapper and the protocol refer to each other, and TLS sends close_notify
    only once no producer is registered; a transport that already let go of it (or never had
    one) raises, which here means there is nothing left to do."""
    try:
        transport.unregisterProducer()
    except (AttributeError, RuntimeError):
        pass


def close_if_sent(transport) -> bool:
    """Close a plain TCP connection now, when everything written to it has been sent: what
    loseConnection does on a later reactor turn (the socket shut down and closed, the
    protocol's connectionLost called with CONNECTION_DONE), without first asking epoll to
    report the socket writable and sending it nothing.  False, and nothing done, when data
    is still queued, under TLS (its close_notify must go out first) or for another kind of
    transport: then call loseConnection.  The protocol's connectionLost runs before this
    returns, as it does in loseConnection for a connection whose writing side is gone."""
    if not isinstance(transport, WriteThroughServer) or transport.TLS or not _idle(transport):
        return False
    transport.stopReading()
    transport.stopWriting()
    transport.connectionLost(Failure(main.CONNECTION_DONE))
    return True


class WriteThroughClient(_WriteThroughConnection, tcp.Client):
    pass


class _Connector(tcp.Connector):
    def _makeTransport(self) -> WriteThroughClient:
        return WriteThroughClient(self.host, self.port, self.bindAddress, self, self.reactor)


@implementer(IStreamClientEndpoint)
class WriteThroughTCPEndpoint:
    """TCP4ClientEndpoint/TCP6ClientEndpoint (the address decides) whose connection is a
    WriteThroughClient."""

    def __init__(self, reactor, host: str, port: int, timeout: float = 30) -> None:
        self._reactor, self._host, self._port, self._timeout = reactor, host, port, timeout

    def connect(self, protocol_factory) -> defer.Deferred:
        try:
            wrapper = endpoints._WrappingFactory(protocol_factory)
            _Connector(
                self._host, self._port, wrapper, self._timeout, None, self._reactor
            ).connect()
            return wrapper._onConnection
        except BaseException:
            return defer.fail()
