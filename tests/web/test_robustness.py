"""Whatever a client sends, the web listener answers 200/400/404/405/413, never 500 or a
traceback (hypothesis over real HTTP requests)."""

from __future__ import annotations

import socket
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsuite.web.autodiscover import MalformedRequest, parse_pox_request

PATHS = st.sampled_from(
    [
        "/mail/config-v1.1.xml",
        "/.well-known/autoconfig/mail/config-v1.1.xml",
        "/autodiscover/autodiscover.xml",
        "/autodiscover/autodiscover.json",
        "/autodiscover/autodiscover.json/v1.0/",
        "/apple/mobileconfig",
        "/.well-known/mta-sts.txt",
        "/",
        "/%00",
        "/mail/",
    ]
)
TEXT = st.text(max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=PATHS,
    tail=TEXT,
    key=st.sampled_from(["emailaddress", "Email", "Protocol", "x"]),
    value=TEXT,
    host=st.one_of(TEXT, st.just("autoconfig.example.test")),
    method=st.sampled_from(["GET", "POST", "HEAD", "PUT"]),
    body=st.binary(max_size=200),
)
def test_any_request_gets_a_clean_answer(web_server, path, tail, key, value, host, method, body):
    target = quote(path + tail, safe="/%") + "?" + quote(key) + "=" + quote(value)
    host_header = host.encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b"")
    request = (
        method.encode()
        + b" "
        + target.encode("ascii")
        + b" HTTP/1.1\r\nHost: "
        + host_header
        + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    with socket.create_connection(web_server, timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    assert status in (200, 400, 404, 405, 413), data[:200]
    assert b"Traceback" not in data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_pox_parser_returns_an_address_or_malformed(body):
    try:
        assert isinstance(parse_pox_request(body), str)
    except MalformedRequest:
        pass


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: example.test\r\nX-Long: " + b"b" * 20000 + b"\r\n", b"431"),
    ],
    ids=["request-line", "header-field"],
)
def test_an_overlong_line_is_answered_414_or_431_and_closed(web_server, head, status):
    # RFC 9110 §15.5.15 (414) and RFC 6585 §5 (431), where twisted.web closes without a word.
    sock = socket.create_connection(web_server, timeout=10)
    try:
        try:
            sock.sendall(head)
        except OSError:
            pass  # closed while sending: the answer is in the receive buffer
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 " + status + b" ")
        assert b"Connection: close" in answer
    finally:
        sock.close()
