"""Write-through transport: replies reach the client whole and in order, whether the kernel
takes them at once, in part (the rest queued behind), or only after TLS is started on the line."""

from __future__ import annotations

import hashlib
import inspect
import socket
import ssl
import time

import pytest
from twisted.internet import _newtls, abstract, base, defer, endpoints, protocol, tcp

from mailsuite.app import ListenerService
from mailsuite.config import config_from_dict
from mailsuite.tls import TlsContexts
from mailsuite.transport import (
    WriteThroughClient,
    WriteThroughServer,
    WriteThroughTCPEndpoint,
    close_if_sent,
    gathered_writes,
)
from tests.conftest import base_config, client_tls_context, on_reactor

# A 1 MiB piece (more than the socket takes at once: sent in part, the rest queued), then 5 MiB
# in pieces from 1 byte to 256 KiB that queue behind it.
PIECES = [b"\xfe" * (1 << 20)] + [bytes([i % 251]) * (1 + (i * 7919) % 262144) for i in range(48)]
PAYLOAD = b"".join(PIECES)
HELD: list[int] = []  # writes a gathered_writes block held, per "HELD" request
CLOSED: list[tuple] = []  # per "BYE"/"BIG" request: (close_if_sent's answer, lost by then)


class Sender(protocol.Protocol):
    """On "GO" writes PIECES (alternating write and writeSequence) and closes; on "TLS"
    starts TLS first."""

    lost = False

    def connectionMade(self) -> None:
        # A small send buffer makes the kernel take only part of the larger writes.
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)

    def connectionLost(self, reason) -> None:
        self.lost = True

    def dataReceived(self, data: bytes) -> None:
        if data.startswith(b"TLS"):
            self.transport.write(b"READY\n")
            self.transport.startTLS(self.factory.tls)
        elif data.startswith(b"GO"):
            write_pieces(self.transport)
        elif data.startswith(b"SEQ"):
            write_gathered(self.transport)
        elif data.startswith(b"BYE") or data.startswith(b"BIG"):
            self.transport.write(b"221 Bye\r\n" if data.startswith(b"BYE") else PAYLOAD)
            closed = close_if_sent(self.transport)
            CLOSED.append((closed, self.lost))
            if not closed:
                self.transport.loseConnection()
        elif data.startswith(b"HELD"):
            # Everything written in the block (TLS records, beneath) leaves at its end.
            with gathered_writes(self.transport):
                for piece in PIECES:
                    self.transport.write(piece)
                HELD.append(len(self.transport._gathered or ()))
            self.transport.loseConnection()


def write_pieces(transport) -> None:
    """PIECES, alternating write and writeSequence, then close."""
    for i, piece in enumerate(PIECES):
        if i % 2:
            transport.writeSequence([piece[:7], piece[7:]])
        else:
            transport.write(piece)
    transport.loseConnection()


def gathered() -> list:
    """A FETCH's way of writing: small lines around big bodies, memoryview slices among
    them, in writeSequence calls of several pieces."""
    body = bytes(range(256)) * 4096  # 1 MiB
    return [
        [b"* 1 FETCH (BODY[] {%d}\r\n" % len(body), memoryview(body)[5:], b")\r\n"],
        [b"a", b"b" * 70000, memoryview(body)[:300000], b"c" * 10, b"d"],
        [memoryview(body)[7:20], b"tail\r\n"],
    ]


def write_gathered(transport) -> None:
    for pieces in gathered():
        transport.writeSequence(pieces)
    transport.loseConnection()


@pytest.fixture
def sender_port(reactor_running, tmp_path):
    config = config_from_dict(base_config(tmp_path), base=tmp_path)
    factory = protocol.Factory.forProtocol(Sender)
    factory.tls = TlsContexts(config).server_options()
    listener = ListenerService("smtp", "127.0.0.1:0", factory)
    on_reactor(listener.startService)
    yield listener
    on_reactor(listener.stopService)


def connect(port: int) -> socket.socket:
    """A client with a small receive window that reads only after a pause, so the server's
    socket fills and its later writes are taken in part or not at all."""
    sock = socket.socket()
    sock.settimeout(20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(("127.0.0.1", port))
    return sock


def read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_listeners_use_the_write_through_transport(sender_port):
    assert sender_port.listening.transport is WriteThroughServer


def test_plain_writes_arrive_whole_and_in_order(sender_port):
    with connect(sender_port.port) as sock:
        sock.sendall(b"GO\n")
        time.sleep(0.2)
        got = read_all(sock)
    assert len(got) == len(PAYLOAD)
    assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()


def test_gathered_writes_with_memoryviews_arrive_whole_and_in_order(sender_port):
    # sendmsg takes the pieces in one call; what the small send buffer leaves of a piece
    # (a memoryview's tail too) is queued, in order.
    with connect(sender_port.port) as sock:
        sock.sendall(b"SEQ\n")
        time.sleep(0.2)
        got = read_all(sock)
    expected = b"".join(bytes(p) for pieces in gathered() for p in pieces)
    assert len(got) == len(expected)
    assert hashlib.sha256(got).digest() == hashlib.sha256(expected).digest()


def test_close_if_sent_closes_at_once_when_all_was_sent(sender_port):
    with connect(sender_port.port) as sock:
        sock.sendall(b"BYE\n")
        assert read_all(sock) == b"221 Bye\r\n"  # then the end of the stream
    # The protocol heard of the loss before close_if_sent returned.
    assert CLOSED[-1] == (True, True)


def test_close_if_sent_leaves_queued_data_to_loseconnection(sender_port):
    with connect(sender_port.port) as sock:
        sock.sendall(b"BIG\n")
        time.sleep(0.2)
        got = read_all(sock)
    assert CLOSED[-1] == (False, False)
    assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()


def test_writes_after_starttls_are_encrypted_whole_and_in_order(sender_port):
    with connect(sender_port.port) as raw:
        raw.sendall(b"TLS\n")
        assert raw.recv(100) == b"READY\n"
        ctx = client_tls_context()
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with ctx.wrap_socket(raw) as tls:
            tls.sendall(b"GO\n")
            time.sleep(0.2)
            chunks = []
            try:
                while chunk := tls.recv(1 << 16):
                    chunks.append(chunk)
            except ssl.SSLEOFError:
                pass  # closed without close_notify is fine here: we count the bytes
    got = b"".join(chunks)
    assert len(got) == len(PAYLOAD)
    assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()


def test_writes_gathered_under_starttls_leave_together_whole_and_in_order(sender_port):
    with connect(sender_port.port) as raw:
        raw.sendall(b"TLS\n")
        assert raw.recv(100) == b"READY\n"
        with client_tls_context().wrap_socket(raw) as tls:
            tls.sendall(b"HELD\n")
            time.sleep(0.2)
            chunks = []
            try:
                while chunk := tls.recv(1 << 16):
                    chunks.append(chunk)
            except ssl.SSLEOFError:
                pass
    got = b"".join(chunks)
    # The TLS layer wrote its records (16 KiB each) into the block, not to the socket.
    assert HELD and HELD[-1] > len(PAYLOAD) // 16384
    assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()


class Writer(protocol.Protocol):
    """The client side: writes PIECES as soon as it is connected, then closes."""

    def connectionMade(self) -> None:
        self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        write_pieces(self.transport)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_client_endpoint_writes_arrive_whole_and_in_order(reactor_running, family):
    from twisted.internet import reactor

    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as server:
        try:
            server.bind((host, 0))
        except OSError:  # pragma: no cover - a machine without IPv6 on loopback
            pytest.fail(f"cannot bind {host}")
        server.listen(1)
        server.settimeout(20)
        endpoint = WriteThroughTCPEndpoint(reactor, host, server.getsockname()[1], 10)
        proto = on_reactor(endpoint.connect, protocol.Factory.forProtocol(Writer))
        assert isinstance(proto.transport, WriteThroughClient)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(20)
            time.sleep(0.2)  # let the client's socket fill: later writes queue behind
            got = read_all(conn)
    assert len(got) == len(PAYLOAD)
    assert hashlib.sha256(got).digest() == hashlib.sha256(PAYLOAD).digest()


def test_client_endpoint_reports_a_refused_connection(reactor_running):
    from twisted.internet import error, reactor

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    endpoint = WriteThroughTCPEndpoint(reactor, "127.0.0.1", port, 5)
    with pytest.raises(error.ConnectionRefusedError):
        on_reactor(endpoint.connect, protocol.Factory.forProtocol(Writer))


class Aborter(protocol.Protocol):
    """On "GO": aborts the connection, then writes; nothing written after the abort may leave."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(b"before\n")
        self.transport.abortConnection()
        self.transport.write(b"after the abort\n")
        self.transport.writeSequence([b"and ", b"more\n"])


def test_nothing_is_sent_after_abort_connection(reactor_running, tmp_path):
    listener = ListenerService("smtp", "127.0.0.1:0", protocol.Factory.forProtocol(Aborter))
    on_reactor(listener.startService)
    try:
        with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as sock:
            sock.sendall(b"GO\n")
            got = b""
            try:
                while chunk := sock.recv(1 << 16):
                    got += chunk
            except ConnectionResetError:
                pass
    finally:
        on_reactor(listener.stopService)
    assert got in (b"", b"before\n")


# -- the private Twisted internals mailsuite.transport relies on --------------------------------
# Each check names one private attribute or function of Twisted that the write-through transport
# reads or calls, and the shape it expects. A Twisted release that changes one fails here by
# name, before it can make a listener lose or reorder bytes; pyproject.toml pins Twisted to the
# releases these checks (and the tests above) have passed on.


class _RecordingReactor:
    """Just enough of IReactorFDSet for a FileDescriptor that is written to."""

    def __init__(self) -> None:
        self.writers: set = set()

    def addWriter(self, fd) -> None:
        self.writers.add(fd)

    def removeWriter(self, fd) -> None:
        self.writers.discard(fd)


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def _check_new_tls_start_tls() -> None:
    assert _params(_newtls.startTLS) == ["transport", "contextFactory", "normal", "bypass"]


def _check_connection_mixin_start_tls() -> None:
    # The method WriteThroughServer/Client override: the one tcp's connections use.
    assert tcp.Server.startTLS is _newtls.ConnectionMixin.startTLS
    assert tcp.Client.startTLS is _newtls.ConnectionMixin.startTLS
    assert _params(_newtls.ConnectionMixin.startTLS) == ["ctx", "normal"]
    assert tcp.Connection.TLS is False


def _check_data_buffer_and_offset() -> None:
    # What doWrite has not sent yet is dataBuffer[offset:].
    assert abstract.FileDescriptor.dataBuffer == b""
    assert abstract.FileDescriptor.offset == 0


def _check_temp_data_len() -> None:
    # write() queues into _tempDataBuffer and counts it in _tempDataLen.
    fd = abstract.FileDescriptor(_RecordingReactor())
    assert fd._tempDataLen == 0
    fd.connected = True
    fd.write(b"abc")
    fd.writeSequence([b"de", b"f"])
    assert fd._tempDataLen == 6
    assert b"".join(fd._tempDataBuffer) == b"abcdef"
    assert fd.reactor.writers == {fd}


def _check_write_disconnected() -> None:
    assert abstract.FileDescriptor._writeDisconnected is False


def _check_aborting() -> None:
    assert tcp.Connection._aborting is False


def _check_connector_make_transport() -> None:
    assert _params(tcp.Connector._makeTransport) == []
    assert "self._makeTransport()" in inspect.getsource(base.BaseConnector.connect)
    assert _params(tcp.Connector.__init__) == [
        "host",
        "port",
        "factory",
        "timeout",
        "bindAddress",
        "reactor",
    ]
    assert _params(tcp.Client.__init__) == ["host", "port", "bindAddress", "connector", "reactor"]


def _check_wrapping_factory() -> None:
    wrapper = endpoints._WrappingFactory(protocol.Factory.forProtocol(protocol.Protocol))
    assert isinstance(wrapper._onConnection, defer.Deferred)
    assert isinstance(wrapper, protocol.ClientFactory)


TWISTED_INTERNALS = {
    "_newtls.startTLS": _check_new_tls_start_tls,
    "_newtls.ConnectionMixin.startTLS": _check_connection_mixin_start_tls,
    "abstract.FileDescriptor.dataBuffer+offset": _check_data_buffer_and_offset,
    "abstract.FileDescriptor._tempDataLen": _check_temp_data_len,
    "abstract.FileDescriptor._writeDisconnected": _check_write_disconnected,
    "tcp.Connection._aborting": _check_aborting,
    "tcp.Connector._makeTransport": _check_connector_make_transport,
    "endpoints._WrappingFactory._onConnection": _check_wrapping_factory,
}


@pytest.mark.parametrize("name", list(TWISTED_INTERNALS))
def test_twisted_internal_still_has_the_expected_shape(name):
    TWISTED_INTERNALS[name]()


class _TakesSome:
    """A socket whose kernel takes exactly `n` bytes of a sendmsg."""

    def __init__(self, n: int):
        self.n = n

    def sendmsg(self, pieces) -> int:
        return min(self.n, sum(len(p) for p in pieces))


def test_what_sendmsg_leaves_is_the_exact_rest_wherever_it_stops():
    from mailsuite import transport

    pieces = [b"ab", memoryview(b"0123456789")[2:], b"", b"xyz"]
    whole = b"".join(bytes(p) for p in pieces)
    for n in range(len(whole) + 1):
        fd = abstract.FileDescriptor()
        fd.connected, fd.socket = True, _TakesSome(n)
        rest = transport._send_all_now(fd, list(pieces))
        assert b"".join(bytes(p) for p in rest) == whole[n:], n
