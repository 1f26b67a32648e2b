"""Random input to a real POP3 session (real store and accounts): only protocol replies come out.

The session runs on the reactor thread against Twisted's in-memory transport, so hypothesis can
drive hundreds of sessions quickly, in both AUTHORIZATION and TRANSACTION states.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mailsuite.pop3.server import build_factory
from tests.conftest import DEFAULT_PASSWORD
from tests.pop3.test_pop3_server import ALICE, MESSAGES, deliver

WORDS = [
    b"USER",
    b"PASS",
    b"STAT",
    b"LIST",
    b"RETR",
    b"DELE",
    b"NOOP",
    b"RSET",
    b"TOP",
    b"UIDL",
    b"CAPA",
    b"AUTH",
    b"STLS",
    b"UTF8",
    b"APOP",
    b"PLAIN",
    b"LOGIN",
    b"*",
    b"=",
    b"0",
    b"1",
    b"2",
    b"3",
    b"99999999999",
    b"-1",
    b"AGFsaWNlAHg=",
    b".",
    b"",
    b"\xff\xfe",
]
line = st.lists(st.sampled_from(WORDS) | st.binary(max_size=12), min_size=1, max_size=4).map(
    b" ".join
)
session_input = st.lists(
    st.tuples(line, st.sampled_from([b"\r\n", b"\n", b"\r\n\r\n"])).map(b"".join), max_size=12
)


class Transport(StringTransport):
    """Twisted's in-memory transport, plus the startTLS that STLS calls."""

    def startTLS(self, options) -> None:
        self.tls_started = True


def start_session(srv, logged_in: bool):
    proto = build_factory(srv.services, "pop3").buildProtocol(None)
    tr = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(tr)
    if logged_in:
        proto.dataReceived(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\n".encode())
    return proto, tr


def test_random_input_gets_only_protocol_replies(server_factory):
    # Random USER/PASS pairs are failed logins: keep the throttle from locking the real one out.
    srv = server_factory(
        auth={
            "plaintext": "loopback",
            "free_failures": 10_000,
            "lockout_failures": 10_000,
            "ip_lockout_failures": 10_000,
        }
    )
    srv.add_user(ALICE)
    deliver(srv, ALICE, *MESSAGES)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(session_input, st.booleans())
    def run(chunks, logged_in):
        proto, tr = srv.call(start_session, srv, logged_in)
        if logged_in:
            deadline = time.monotonic() + 10
            while b"Logged in" not in srv.call(tr.value) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert b"Logged in" in srv.call(tr.value)
        for chunk in chunks:
            srv.call(proto.dataReceived, chunk)
        out = srv.call(tr.value)
        srv.call(proto.connectionLost, Failure(ConnectionDone()))
        assert b"Internal error" not in out
        assert out.startswith(b"+OK mailsuite ready.\r\n")

    run()
    # No session survived to hold the maildrop lock; no DELE reached UPDATE (no QUIT sent).
    assert len(srv.message_files(ALICE)) == len(MESSAGES)
