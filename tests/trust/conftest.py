"""Fixtures for trust tests: the loopback stub DNS server and lookups pointed at it."""

from __future__ import annotations

import pytest

from mailsuite.trust.resolver import build_lookup
from tests.trust.trust_support import StubDnsServer, StubZone, on_reactor, trust_config


@pytest.fixture(scope="session")
def stub_dns_server(reactor_running):
    srv = on_reactor(StubDnsServer)
    yield srv
    on_reactor(srv.udp.stopListening)
    on_reactor(srv.tcp.stopListening)


@pytest.fixture
def zone(stub_dns_server) -> StubZone:
    z = stub_dns_server.zone
    on_reactor(z.clear)
    yield z
    on_reactor(z.clear)


@pytest.fixture
def config(tmp_path, stub_dns_server):
    return trust_config(tmp_path, stub_dns_server.address)


@pytest.fixture
def lookup(config, zone):
    """The production lookup function, pointed at the stub server through [trust] resolvers."""
    return on_reactor(build_lookup, config)
