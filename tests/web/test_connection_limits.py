"""The web and metrics listeners hold slots of the same connection limiter as the mail
listeners (`[limits] connections_total`, `connections_per_ip`), over real sockets."""

from __future__ import annotations

import socket

import pytest

from tests.test_limits import Peer, readable_within

LIMITS = {"connections_total": 50, "connections_per_ip": 3}


def answer_then_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("kind", ["http", "metrics"])
def test_one_connection_past_the_per_address_limit_gets_503_and_is_closed(server_factory, kind):
    srv = server_factory(listen={"metrics": ["127.0.0.1:0"]}, limits=LIMITS)
    held = [Peer(srv.port(kind), source="127.0.0.5") for _ in range(3)]
    try:
        extra = Peer(srv.port(kind), source="127.0.0.5")
        answer = answer_then_closed(extra.sock)
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b"Connection: close" in answer
        # Another address is still served, and so are the connections that hold the slots.
        other = Peer(srv.port(kind), source="127.0.0.6")
        other.send(b"GET /nothing-here HTTP/1.1\r\nHost: example.test\r\n\r\n")
        assert other.line().startswith(b"HTTP/1.1 404 ")
        held[0].send(
            b"GET /nothing-here HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
        )
        assert answer_then_closed(held[0].sock).startswith(b"HTTP/1.1 404 ")
    finally:
        for peer in held:
            peer.sock.close()


def test_idle_web_connections_make_room_for_a_mail_client_at_the_total(server_factory):
    srv = server_factory(
        auth={"plaintext": "loopback"},
        listen={"metrics": ["127.0.0.1:0"]},
        limits={"connections_total": 4, "connections_per_ip": 2},
    )
    srv.add_user("alice@example.test")
    idle = [
        Peer(srv.port("http" if i % 2 else "metrics"), source=f"127.0.0.{10 + i // 2}")
        for i in range(4)
    ]
    try:
        mail = Peer(srv.port("pop3"), source="127.0.0.20")
        assert mail.line().startswith(b"+OK")
        # The quietest connection that has not logged in went to make room: the oldest of the
        # idle web ones, closed without a word (it had asked nothing).
        assert readable_within(idle[0].sock, 5)
        assert idle[0].sock.recv(100) == b""
        assert [readable_within(p.sock, 0.2) for p in idle[1:]] == [False] * 3
    finally:
        for peer in idle:
            peer.sock.close()
