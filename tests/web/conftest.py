"""A real HTTP listener on 127.0.0.1:0 serving mailsuite.web, driven by a reactor thread."""

from __future__ import annotations

import http.client
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread

from mailsuite.config import Config, PublicConfig
from mailsuite.web.site import build_factory


def _ensure_reactor() -> None:
    if not reactor.running:
        t = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
        )
        t.start()
        while not reactor.running:
            threading.Event().wait(0.01)


@pytest.fixture
def web_config(tmp_path: Path) -> Config:
    # Deliberately unusual public names and ports: answers must come from here, not defaults.
    return replace(
        Config(),
        hostname="bind.internal.test",
        domains=["example.test", "second.test"],
        data_dir=tmp_path,
        public=PublicConfig(
            host="mx.public.test",
            imaps_port=10993,
            imap_port=10143,
            pop3s_port=10995,
            pop3_port=10110,
            submissions_port=10465,
            submission_port=10587,
            https_port=8443,
        ),
    )


@pytest.fixture
def web_server(web_config: Config):
    """(host, port) of a running HTTP listener built by mailsuite.web.site.build_factory."""
    _ensure_reactor()
    services = SimpleNamespace(config=web_config, accounts=None)
    factory = build_factory(services, "http")
    port = blockingCallFromThread(reactor, reactor.listenTCP, 0, factory, interface="127.0.0.1")
    yield "127.0.0.1", port.getHost().port
    blockingCallFromThread(reactor, port.stopListening)


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
