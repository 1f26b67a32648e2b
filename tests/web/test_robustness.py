"""Whatever a client sends, the web listener answers 200/400/404/405/413, never 500 or a
traceback (hypothesis over real HTTP requests)."""

from __future__ import annotations

import socket
from urllib.parse import quote

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
