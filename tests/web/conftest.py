"""The web listener of a real running mailsuite (tests/conftest.py's server_factory)."""

from __future__ import annotations

import http.client

import pytest

# Deliberately unusual public names and ports: answers must come from here, not defaults.
PUBLIC = {
    "host": "mx.public.test",
    "imaps_port": 10993,
    "imap_port": 10143,
    "pop3s_port": 10995,
    "pop3_port": 10110,
    "submissions_port": 10465,
    "submission_port": 10587,
    "https_port": 8443,
}


@pytest.fixture
def web_running(server_factory):
    return server_factory(
        "web",
        hostname="bind.internal.test",
        domains=["example.test", "second.test"],
        public=PUBLIC,
    )


@pytest.fixture
def web_config(web_running):
    return web_running.config


@pytest.fixture
def web_server(web_running) -> tuple[str, int]:
    """(host, port) of the running server's `http` listener."""
    return "127.0.0.1", web_running.port("http")


class Http:
    """A tiny blocking client: one request per connection, returns (status, headers, body)."""

    def __init__(self, addr: tuple[str, int]):
        self.addr = addr

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        host: str = "example.test",
        headers: dict[str, str] | None = None,
    ):
        conn = http.client.HTTPConnection(*self.addr, timeout=10)
        try:
            h = {"Host": host}
            h.update(headers or {})
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture
def web(web_server) -> Http:
    return Http(web_server)
