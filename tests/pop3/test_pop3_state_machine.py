"""The POP3 session state machine driven without a socket: lines in, replies out.

`Conn` stands in for the Twisted adapter (it records what the session asks for, and streams a
big body by reading it through the encoder); the store and accounts are real.  The session runs
on the reactor thread; logins (a Deferred from the thread pool) are waited for with `settle`.
"""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor

from mailsuite.pop3.session import Pop3Session
from tests.conftest import DEFAULT_PASSWORD
from tests.pop3.test_pop3_server import ALICE, MESSAGES, big_message, deliver

STATUS = re.compile(rb"\A(\+OK|-ERR)( [^\r\n]*)?\r\n")
CONTINUATION = re.compile(rb"\A\+ [A-Za-z0-9+/=]*\r\n\Z")


class Conn:
    """Records what a Pop3Session asks of its connection."""

    def __init__(self, secure: bool) -> None:
        self.secure = secure
        self.written: list[bytes] = []  # one entry per write: a whole reply
        self.closed = False
        self.tls_started = False
        self.streamed = 0

    def write(self, parts: list[bytes]) -> None:
        self.written.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_secure(self) -> bool:
        return self.secure

    def start_tls(self) -> None:
        self.tls_started = self.secure = True

    def stream(self, fileobj, encoder) -> defer.Deferred:
        self.streamed += 1
        with fileobj:
            body = encoder.feed(fileobj.read()) + encoder.finish()
        self.written[-1] += body
        return defer.succeed(None)

    def processed(self) -> None:
        pass

    def text(self) -> list[bytes]:
        return [w.split(b"\r\n", 1)[0] for w in self.written]


def settle(session: Pop3Session) -> defer.Deferred:
    d = defer.Deferred()

    def check():
        if session.busy:
            reactor.callLater(0.005, check)
        else:
            d.callback(None)

    check()
    return d


def start(srv, secure=True) -> tuple[Pop3Session, Conn]:
    conn = Conn(secure)
    session = Pop3Session(srv.services, "pop3", conn)
    session.connected("192.0.2.9")
    session.greet()
    return session, conn


def talk(srv, session: Pop3Session, conn: Conn, *lines: str) -> list[bytes]:
    """Send lines pipelined, wait for every reply; the first line of each new reply."""
    before = len(conn.written)
    srv.call(session.feed, "".join(line + "\r\n" for line in lines).encode())
    srv.call(settle, session)
    return conn.text()[before:]


@pytest.fixture
def alice(mail_server):
    deliver(mail_server, ALICE, *MESSAGES)
    return mail_server


def test_rfc1939_transaction_commands_refused_in_authorization(alice):
    session, conn = start(alice)
    assert conn.text() == [b"+OK mailsuite ready."]
    assert talk(alice, session, conn, "STAT", "RETR 1", "PASS x") == [
        b"-ERR Unknown command.",
        b"-ERR Unknown command.",
        b"-ERR No username given.",
    ]


def test_rfc2595_user_refused_before_tls(alice):
    session, conn = start(alice, secure=False)
    refused = (
        b"-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
    )
    assert talk(alice, session, conn, f"USER {ALICE}", "AUTH PLAIN") == [refused, refused]


def test_rfc2595_stls_drops_what_was_pipelined_after_it(alice):
    session, conn = start(alice, secure=False)
    assert talk(alice, session, conn, "STLS", f"USER {ALICE}") == [
        b"+OK Begin TLS negotiation now."
    ]
    assert conn.tls_started
    assert talk(alice, session, conn, "STLS") == [b"-ERR TLS is already active or not available."]


def test_rfc1939_user_pass_stat_retr_dele_quit(alice):
    session, conn = start(alice)
    assert talk(alice, session, conn, f"USER {ALICE}", f"PASS {DEFAULT_PASSWORD}") == [
        b"+OK",
        b"+OK Logged in.",
    ]
    octets = sum(len(m.replace(b"\n", b"\r\n")) for m in MESSAGES)
    assert talk(alice, session, conn, "STAT") == [f"+OK 3 {octets}".encode()]
    assert talk(alice, session, conn, "RETR 2")[0].startswith(b"+OK")
    assert conn.written[-1].endswith(b"line 3\r\n.\r\n")
    assert talk(alice, session, conn, "RETR 9", "USER x", "DELE 1") == [
        b"-ERR There's no message 9.",
        b"-ERR Unknown command.",
        b"+OK Marked to be deleted.",
    ]
    assert talk(alice, session, conn, "QUIT") == [b"+OK Logging out, 1 messages deleted."]
    assert conn.closed and session.state == "UPDATE"
    assert len(alice.message_files(ALICE)) == 2


def test_rfc5034_star_cancels_auth_and_commands_resume(alice):
    session, conn = start(alice)
    assert talk(alice, session, conn, "AUTH LOGIN") == [b"+ VXNlcm5hbWU6"]
    assert talk(alice, session, conn, "*") == [b"-ERR [AUTH] Authentication cancelled."]
    assert talk(alice, session, conn, "CAPA")[0] == b"+OK Capability list follows"


def test_rfc5034_auth_plain_initial_response_logs_in(alice):
    session, conn = start(alice)
    token = base64.b64encode(f"\0{ALICE}\0{DEFAULT_PASSWORD}".encode()).decode()
    assert talk(alice, session, conn, f"AUTH PLAIN {token}") == [b"+OK Logged in."]
    assert session.state == "TRANSACTION"


def test_rfc4616_authzid_is_the_user_itself_in_any_case_as_in_smtp_and_imap(alice):
    session, conn = start(alice)
    other = base64.b64encode(f"bob@example.test\0{ALICE}\0{DEFAULT_PASSWORD}".encode())
    assert talk(alice, session, conn, f"AUTH PLAIN {other.decode()}") == [
        b"-ERR [AUTH] Authorization identity not permitted."
    ]
    own = base64.b64encode(f"{ALICE.upper()}\0{ALICE}\0{DEFAULT_PASSWORD}".encode())
    assert talk(alice, session, conn, f"AUTH PLAIN {own.decode()}") == [b"+OK Logged in."]


def test_big_message_is_streamed_through_the_connection(mail_server):
    deliver(mail_server, ALICE, big_message(1))
    session, conn = start(mail_server)
    talk(mail_server, session, conn, f"USER {ALICE}", f"PASS {DEFAULT_PASSWORD}")
    assert talk(mail_server, session, conn, "RETR 1")[0].startswith(b"+OK")
    assert conn.streamed == 1 and conn.written[-1].endswith(b"\r\n.\r\n")


WORDS = [
    "USER", "PASS", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA",
    "AUTH", "STLS", "UTF8", "APOP", "PLAIN", "LOGIN", "*", "=", "1", "2", "0", "-1", "99999999",
    "AGFsaWNlAHg=", ".", "",
]  # fmt: skip
random_line = st.lists(
    st.sampled_from(WORDS).map(str.encode) | st.binary(max_size=10), min_size=1, max_size=4
).map(b" ".join)


def test_random_lines_get_only_status_lines_and_whole_responses(server_factory):
    # Random USER/PASS pairs are failed logins: keep the throttle from locking the real one out.
    srv = server_factory(
        auth={
            "free_failures": 10_000,
            "lockout_failures": 10_000,
            "ip_lockout_failures": 10_000,
        }
    )
    srv.add_user(ALICE)
    deliver(srv, ALICE, *MESSAGES)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(random_line, max_size=15), st.booleans(), st.booleans())
    def run(lines, logged_in, secure):
        session, conn = srv.call(start, srv, secure)
        if logged_in:
            talk(srv, session, conn, f"USER {ALICE}", f"PASS {DEFAULT_PASSWORD}")
        srv.call(session.feed, b"".join(line + b"\r\n" for line in lines))
        srv.call(session.connection_lost)
        for reply in srv.call(lambda: list(conn.written)):
            if CONTINUATION.match(reply):
                continue
            assert STATUS.match(reply), reply
            if reply.count(b"\r\n") > 1:
                assert reply.endswith(b"\r\n.\r\n"), reply
            assert b"Internal error" not in reply

    run()
    assert len(srv.message_files(ALICE)) == len(MESSAGES)
