"""Random input to the ManageSieve parser and to real sessions (real store, accounts and script
store, Twisted's in-memory transport): nothing raises, buffers stay bounded, only protocol
responses come out, and nothing half-made is left among the scripts."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mailsuite.managesieve.parser import CommandReader, Line, LiteralTooLarge, Malformed
from mailsuite.managesieve.server import build_factory
from tests.managesieve.conftest import ALICE, LISTENERS, plain_auth

WORDS = [
    b"AUTHENTICATE",
    b"STARTTLS",
    b"CAPABILITY",
    b"LOGOUT",
    b"NOOP",
    b"HAVESPACE",
    b"PUTSCRIPT",
    b"CHECKSCRIPT",
    b"LISTSCRIPTS",
    b"SETACTIVE",
    b"GETSCRIPT",
    b"DELETESCRIPT",
    b"RENAMESCRIPT",
    b"UNAUTHENTICATE",
    b'"PLAIN"',
    b'"LOGIN"',
    b'"*"',
    b'""',
    b'"a"',
    b'"b"',
    b'"\\"',
    b'"\\q"',
    b'"unterminated',
    b"{0+}\r\n",
    b"{3+}\r\n",
    b"{5}\r\n",
    b"{99999999+}\r\n",
    b"{x}",
    b"100",
    b"keep;",
    b"if true {",
    b"(",
    b"\xff\xfe",
]
line = st.lists(st.sampled_from(WORDS) | st.binary(max_size=12), min_size=1, max_size=5).map(
    b" ".join
)
stream = st.lists(
    st.tuples(line, st.sampled_from([b"\r\n", b"\n", b""])).map(b"".join), max_size=12
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(stream, st.integers(min_value=1, max_value=64), st.booleans())
def test_reader_never_raises_and_stays_bounded(data, chunk, skip):
    reader = CommandReader(64, 16, skip_oversized=skip)
    for i in range(0, len(data), chunk):
        reader.feed(data[i : i + chunk])
        while (frame := reader.next()) is not None:
            assert isinstance(frame, (Line, Malformed, LiteralTooLarge))
            if isinstance(frame, Line):
                assert all(len(t) <= 16 for t in frame.args if isinstance(t, bytes))
        # What waits is one unfinished line (with its tail) or one literal within the cap.
        assert reader.pending <= 64 + 16 + chunk


@settings(max_examples=300, deadline=None)
@given(stream)
def test_one_chunk_or_byte_by_byte_gives_the_same_frames(data):
    def run(step):
        reader = CommandReader(64, 16)
        out = []
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            while (frame := reader.next()) is not None:
                out.append(frame)
        return out

    assert run(1) == run(max(1, len(data)))


class Transport(StringTransport):
    """Twisted's in-memory transport, plus the startTLS that STARTTLS calls."""

    def startTLS(self, options) -> None:
        self.tls_started = True


def start_session(srv, logged_in: bool):
    proto = build_factory(srv.services, "managesieve").buildProtocol(None)
    tr = Transport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(tr)
    if logged_in:
        proto.dataReceived(plain_auth(ALICE) + b"\r\n")
    return proto, tr


def test_random_input_to_real_sessions_gets_only_protocol_responses(server_factory):
    # Random AUTHENTICATE lines are failed logins: keep the throttle from locking ALICE out.
    srv = server_factory(
        listen=LISTENERS,
        auth={
            "plaintext": "loopback",
            "free_failures": 10_000,
            "lockout_failures": 10_000,
            "ip_lockout_failures": 10_000,
        },
        limits={"bad_commands": 1000},
    )
    srv.add_user(ALICE)

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(stream, max_size=3), st.booleans())
    def run(chunks, logged_in):
        proto, tr = srv.call(start_session, srv, logged_in)
        if logged_in:
            deadline = time.monotonic() + 10
            while b"Logged in" not in srv.call(tr.value) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert b"Logged in" in srv.call(tr.value)
        for chunk in chunks:
            srv.call(proto.dataReceived, chunk)
        # Let work handed to the durable-I/O service come back before looking.
        deadline = time.monotonic() + 10
        while srv.call(lambda: proto.session.busy) and time.monotonic() < deadline:
            time.sleep(0.005)
        out = srv.call(tr.value)
        srv.call(proto.connectionLost, Failure(ConnectionDone()))
        assert b"Internal error" not in out
        assert out.startswith(b'"IMPLEMENTATION" "mailsuite"\r\n')
        for response in out.split(b"\r\n"):
            assert len(response) < 70_000

    run()
    folder = srv.services.store.path_for(ALICE) / "sieve"
    if folder.exists():
        assert not [p for p in folder.iterdir() if p.name.startswith(".tmp")]
