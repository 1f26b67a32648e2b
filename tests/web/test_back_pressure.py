"""A client that pipelines requests and never reads the answers: the server stops reading
from it once its answers wait unsent, instead of answering (and buffering) for ever, and
goes on when the client reads."""

from __future__ import annotations

import socket
import time

import pytest

REQUESTS = {
    "http": (
        b"GET /mail/config-v1.1.xml?emailaddress=alice@example.test HTTP/1.1\r\n"
        b"Host: example.test\r\n\r\n"
    ),
    "metrics": b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n",
}
# Far more than the kernel's socket buffers on both sides hold when the server stops reading
# (about 4.5 MB here); a server that keeps reading takes it all.
CEILING = 20 << 20


def send_until_the_server_stops_reading(sock: socket.socket, request: bytes) -> int:
    """Pipeline `request` without reading; the bytes sent when the server stopped taking them
    (or CEILING, if it never did)."""
    sock.setblocking(False)
    batch = request * 256
    pending = memoryview(batch)
    sent = 0
    stalled_since = None
    while sent < CEILING:
        try:
            taken = sock.send(pending)  # whole requests only: the rest of a batch goes next
            sent += taken
            pending = pending[taken:] or memoryview(batch)
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 1.5:
                break
            time.sleep(0.02)
    sock.setblocking(True)
    return sent


@pytest.mark.parametrize("kind", ["http", "metrics"])
def test_pipelined_requests_whose_answers_are_never_read_stop_being_read(server_factory, kind):
    srv = server_factory(listen={"metrics": ["127.0.0.1:0"]})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", srv.port(kind)))
    try:
        sent = send_until_the_server_stops_reading(sock, REQUESTS[kind])
        assert sent < 12 << 20
        # The server is still answering other clients.
        other = socket.create_connection(("127.0.0.1", srv.port(kind)), timeout=10)
        other.sendall(b"GET /nothing HTTP/1.0\r\n\r\n")
        assert other.recv(100).startswith(b"HTTP/1.0 404 ")
        other.close()
        # Once the client reads, the server answers on: more than the buffers held.
        answered = 0
        while answered < 16 << 20:
            chunk = sock.recv(1 << 20)
            assert chunk, "closed"
            answered += len(chunk)
    finally:
        sock.close()
