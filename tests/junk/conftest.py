"""Junk filter fixtures: a server with SMTP and IMAP (clear-text login on loopback), senders
and readers over real sockets."""

from __future__ import annotations

import imaplib
import smtplib
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD

USER = "alice@example.test"
ONLY = {k: [] for k in ("submissions", "pop3", "pop3s", "imaps", "http")}


@pytest.fixture
def junk_server(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"}, listen=ONLY)
    srv.add_user(USER)
    return srv


def send(srv, data: bytes, sender: str = "someone@example.org", rcpt: str = USER) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        s.sendmail(sender, [rcpt], data)


def imap_login(srv, user: str = USER) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    c.login(user, DEFAULT_PASSWORD)
    return c


def model(srv, user: str = USER):
    """The account's filter data as the server holds it (blocking calls from the test)."""
    return srv.services.junk.model(srv.services.store.mailbox(user))


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def header(data: bytes, name: bytes) -> bytes | None:
    for line in data.split(b"\n\n", 1)[0].split(b"\n"):
        if line.lower().startswith(name.lower() + b":"):
            return line.split(b":", 1)[1].strip()
    return None


def stored_copy(srv, raw: bytes, folder: str = "INBOX", user: str = USER) -> bytes | None:
    """The stored copy of `raw` in `folder` (found by its Message-ID), or None."""
    msgid = header(raw.replace(b"\r\n", b"\n"), b"Message-ID")
    for data in srv.messages(user, folder):
        if header(data, b"Message-ID") == msgid:
            return data
    return None


@pytest.fixture(scope="session")
def stub_dns(reactor_running):
    """The trust tests' loopback DNS server (twisted.names over an in-memory zone)."""
    from tests.conftest import on_reactor
    from tests.trust.trust_support import StubDnsServer

    srv = on_reactor(StubDnsServer)
    yield srv
    on_reactor(srv.udp.stopListening)
    on_reactor(srv.tcp.stopListening)


@pytest.fixture
def zone(stub_dns):
    from tests.conftest import on_reactor

    on_reactor(stub_dns.zone.clear)
    yield stub_dns.zone
    on_reactor(stub_dns.zone.clear)


def listed_server(server_factory, stub_dns, **junk):
    """A server whose clients (127.0.0.1) are checked like any outside client."""
    srv = server_factory(
        auth={"plaintext": "loopback"},
        listen=ONLY,
        trust={
            "resolvers": [stub_dns.address],
            "dns_timeout": 1.0,
            "skip_networks": [],
            "inbound_checks": False,
        },
        junk=junk,
    )
    srv.add_user(USER)
    return srv


@pytest.fixture(scope="session")
def rspamd(stub_dns, tmp_path_factory):
    """Debian's rspamd on loopback (skips when the package is missing; .ci/run installs it)."""
    from tests.junk.rspamd_support import REDIS, RSPAMD, Rspamd

    if not RSPAMD or not REDIS:
        pytest.skip("rspamd or redis-server is not installed")
    daemon = Rspamd(tmp_path_factory.mktemp("rspamd"), stub_dns.address)
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.stop()
