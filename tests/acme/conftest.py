"""Fixtures for the ACME tests: the stub DNS server answering 127.0.0.1 for the certificate's
names, and a pebble + mailsuite pair started per test."""

from __future__ import annotations

import os

import pytest

from tests.acme.pebble_support import NAMES, PEBBLE, MailsuiteProcess, Pebble, free_port
from tests.trust.trust_support import StubDnsServer, on_reactor


@pytest.fixture(scope="session")
def acme_dns(reactor_running):
    srv = on_reactor(StubDnsServer)
    yield srv
    on_reactor(srv.udp.stopListening)
    on_reactor(srv.tcp.stopListening)


@pytest.fixture
def acme_zone(acme_dns):
    """Every certificate name resolves to 127.0.0.1, where mailsuite listens."""
    zone = acme_dns.zone

    def fill():
        zone.clear()
        for name in NAMES:
            zone.a(name, "127.0.0.1")

    on_reactor(fill)
    yield zone
    on_reactor(zone.clear)


@pytest.fixture
def acme_pair(tmp_path, acme_dns, acme_zone):
    """start(challenge, validity=None) -> (pebble, mailsuite); both stopped after the test."""
    if not os.access(PEBBLE, os.X_OK):
        pytest.skip("pebble is not installed (apt-get install pebble)")
    running = []

    def start(challenge: str = "http-01", validity: int | None = None):
        http, https = free_port(), free_port()
        pebble = Pebble(tmp_path / "pebble", acme_dns.address, http, https, validity)
        running.append(pebble)
        server = MailsuiteProcess(tmp_path / "mailsuite", pebble, challenge, http, https)
        running.append(server)
        return pebble, server

    yield start
    for thing in reversed(running):
        thing.stop()
