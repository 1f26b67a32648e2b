"""A request must arrive whole within REQUEST_DEADLINE, however slowly it trickles in."""

from __future__ import annotations

import socket
import time

from mailsuite.web import site


def _trickle_until_cut_off(address: tuple[str, int], path: bytes) -> None:
    sock = socket.create_connection(address, timeout=5)
    try:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: example.test\r\n")
        answer = b""
        started = time.monotonic()
        while time.monotonic() - started < 5:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            sock.settimeout(0.1)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
        sock.settimeout(5)
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except OSError:
            pass
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert b"Connection: close" in answer
    finally:
        sock.close()


def test_a_request_trickled_in_a_header_at_a_time_is_cut_off_with_408(web_server, monkeypatch):
    # Slowloris: a header line every 0.1 s keeps the idle timeout (60 s) from ever firing;
    # the deadline counts from the connection's start, so the request is refused anyway.
    monkeypatch.setattr(site, "REQUEST_DEADLINE", 0.5)
    _trickle_until_cut_off(web_server, b"/mail/config-v1.1.xml")


def test_the_metrics_listener_cuts_off_a_trickled_request_with_408(server_factory, monkeypatch):
    monkeypatch.setattr(site, "REQUEST_DEADLINE", 0.5)
    srv = server_factory(listen={"metrics": ["127.0.0.1:0"]})
    _trickle_until_cut_off(("127.0.0.1", srv.port("metrics")), b"/metrics")


def test_the_metrics_listener_refuses_a_body_over_the_limit_with_413(server_factory):
    srv = server_factory(listen={"metrics": ["127.0.0.1:0"]})
    sock = socket.create_connection(("127.0.0.1", srv.port("metrics")), timeout=5)
    try:
        sock.sendall(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (site.MAX_BODY + 1)
        )
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 ")
    finally:
        sock.close()


def test_the_deadline_starts_again_after_each_answer(web_server, monkeypatch):
    # A keep-alive client asking one request after another is never cut off mid-way.
    monkeypatch.setattr(site, "REQUEST_DEADLINE", 0.6)
    sock = socket.create_connection(web_server, timeout=5)
    try:
        for _ in range(4):
            sock.sendall(b"GET /x HTTP/1.1\r\nHost: example.test\r\n\r\n")
            answer = b""
            while not answer.endswith(b"Not Found\n"):
                chunk = sock.recv(4096)
                assert chunk, "closed before the answer"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 404 ")
            time.sleep(0.3)
    finally:
        sock.close()
