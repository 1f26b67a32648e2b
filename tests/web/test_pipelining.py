"""Pipelined HTTP requests on one connection are answered a few per reactor turn."""

from __future__ import annotations

import socket

from mailsuite.web.site import REQUESTS_PER_TURN

REQUEST = b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n"


def _read_answers(sock: socket.socket, count: int) -> bytes:
    data = b""
    while data.count(b"HTTP/1.1 ") < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed early"
        data += chunk
    return data


def test_a_pipelined_flood_lets_another_connection_in_between(web_server):
    _flood_and_interleave(web_server)


def test_the_metrics_listener_paces_a_pipelined_flood_too(server_factory):
    srv = server_factory(listen={"metrics": ["127.0.0.1:0"]})
    _flood_and_interleave(("127.0.0.1", srv.port("metrics")))


def _flood_and_interleave(web_server: tuple[str, int]) -> None:
    # One read's worth of requests (about 16 KiB) sent at once, and a single request on a
    # second connection sent right after it: the second is answered while the flood still
    # has most of its answers to come, because the flood gets REQUESTS_PER_TURN answers a
    # reactor turn. Answered in one go, the whole flood was written before the second
    # connection was even read.
    flood = 400
    a = socket.create_connection(web_server, timeout=10)
    b = socket.create_connection(web_server, timeout=10)
    try:
        a.sendall(REQUEST * flood)
        b.sendall(REQUEST)
        assert b"404" in _read_answers(b, 1)
        a.setblocking(False)
        early = b""
        try:
            while True:
                chunk = a.recv(1 << 20)
                if not chunk:
                    break
                early += chunk
        except BlockingIOError:
            pass
        assert early.count(b"HTTP/1.1 ") < flood - REQUESTS_PER_TURN
        a.setblocking(True)
        # Every request is still answered, in order, on the same connection.
        rest = _read_answers(a, flood - early.count(b"HTTP/1.1 "))
        assert (early + rest).count(b"HTTP/1.1 404 ") == flood
    finally:
        a.close()
        b.close()
