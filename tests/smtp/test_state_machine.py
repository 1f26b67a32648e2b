"""The SMTP session state machine driven without a socket: bytes in, replies out.

`Conn` stands in for the Twisted adapter (it records what the session asks for); the services
are real (accounts, store, delivery on a scratch data folder).  The session runs on the reactor
thread; commands answered through a Deferred (AUTH, end of DATA) are waited for with `settle`.
"""

from __future__ import annotations

import base64
import dataclasses
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor

from mailsuite.smtp.session import SmtpSession
from tests.conftest import on_reactor
from tests.smtp.conftest import PASSWORD

REPLY_LINE = re.compile(rb"\A\d{3}[ -][^\r\n]*\Z")


class Conn:
    """Records what an SmtpSession asks of its connection."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.tls_started = False
        self.timeouts: list[float | None] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def start_tls(self) -> None:
        self.tls_started = True

    def set_timeout(self, seconds: float | None) -> None:
        self.timeouts.append(seconds)

    def tls_info(self) -> str | None:
        return None

    def processed(self) -> None:
        pass

    def replies(self) -> list[tuple[int, str]]:
        """Every reply written, as (code, last line's text)."""
        out = []
        for line in b"".join(self.written).split(b"\r\n")[:-1]:
            if line[3:4] == b" ":
                out.append((int(line[:3]), line[4:].decode()))
        return out


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def settle(session: SmtpSession) -> defer.Deferred:
    """Fires once no Deferred holds the session's input."""
    d = defer.Deferred()

    def check():
        if session.busy:
            reactor.callLater(0.005, check)
        else:
            d.callback(None)

    check()
    return d


def start(services, kind="smtp", secure=False) -> tuple[SmtpSession, Conn]:
    conn = Conn()
    session = SmtpSession(services, kind, conn)
    session.connected("192.0.2.7", secure)
    session.greet()
    return session, conn


def talk(session: SmtpSession, conn: Conn, *lines: str) -> list[tuple[int, str]]:
    """Send lines (pipelined, in one piece), wait for every reply, return the new ones."""
    before = len(conn.replies())
    on_reactor(session.feed, "".join(line + "\r\n" for line in lines).encode())
    on_reactor(settle, session)
    return conn.replies()[before:]


def test_rfc5321_mail_before_ehlo_is_503_5_5_1(server):
    session, conn = start(server.services)
    assert conn.replies() == [(220, "mx.example.test ESMTP mailsuite")]
    assert talk(session, conn, "MAIL FROM:<a@remote.test>") == [
        (503, "5.5.1 Error: send HELO/EHLO first")
    ]


def test_rfc4954_submission_refuses_auth_before_starttls_538(server):
    session, conn = start(server.services, "submission")
    ehlo = b"".join(conn.written)
    talk(session, conn, "EHLO client.test")
    ehlo = b"".join(conn.written)[len(ehlo) :]
    assert b"STARTTLS" in ehlo and b"AUTH" not in ehlo
    assert talk(session, conn, "AUTH PLAIN " + b64(f"\0alice@example.test\0{PASSWORD}")) == [
        (538, "5.7.11 Encryption required for requested authentication mechanism")
    ]
    assert talk(session, conn, "MAIL FROM:<alice@example.test>") == [
        (530, "5.7.0 Must issue a STARTTLS command first")
    ]


def test_rfc3207_starttls_drops_pipelined_commands_and_forgets_ehlo(server):
    session, conn = start(server.services, "submission")
    talk(session, conn, "EHLO client.test")
    assert talk(session, conn, "STARTTLS", "MAIL FROM:<alice@example.test>") == [
        (220, "2.0.0 Ready to start TLS")
    ]
    assert conn.tls_started and session.secure
    assert talk(session, conn, "AUTH LOGIN") == [(503, "5.5.1 Error: send EHLO first")]


def test_rfc4954_star_cancels_auth_501_5_0_0_and_commands_resume(server):
    session, conn = start(server.services, "submission", secure=True)
    talk(session, conn, "EHLO client.test")
    assert talk(session, conn, "AUTH LOGIN") == [(334, "VXNlcm5hbWU6")]
    assert session.mode == "auth"
    assert talk(session, conn, "*") == [(501, "5.0.0 Authentication aborted")]
    assert talk(session, conn, "NOOP") == [(250, "2.0.0 Ok")]


def test_rfc4954_auth_login_then_submission_of_own_address(server):
    session, conn = start(server.services, "submission", secure=True)
    talk(session, conn, "EHLO client.test")
    assert talk(session, conn, "AUTH LOGIN " + b64("alice@example.test")) == [(334, "UGFzc3dvcmQ6")]
    assert talk(session, conn, b64(PASSWORD)) == [(235, "2.7.0 Authentication successful")]
    assert session.user == "alice@example.test"
    assert talk(session, conn, "MAIL FROM:<bob@example.test>")[0][0] == 553
    assert talk(session, conn, "MAIL FROM:<alice@example.test>") == [(250, "2.1.0 Ok")]


def test_rfc4954_bad_base64_501_5_5_2(server):
    session, conn = start(server.services, "submission", secure=True)
    talk(session, conn, "EHLO client.test")
    assert talk(session, conn, "AUTH PLAIN not_base64!") == [(501, "5.5.2 Cannot decode response")]


def test_rfc5321_recipient_limit_452_4_5_3(smtp_server):
    server = smtp_server(smtp={"max_recipients": 2})
    session, conn = start(server.services)
    talk(session, conn, "EHLO client.test", "MAIL FROM:<a@remote.test>")
    assert talk(
        session,
        conn,
        "RCPT TO:<alice@example.test>",
        "RCPT TO:<bob@example.test>",
        "RCPT TO:<carol@other.test>",
    ) == [(250, "2.1.5 Ok"), (250, "2.1.5 Ok"), (452, "4.5.3 Error: too many recipients")]


def test_no_open_relay_554_5_7_1(server):
    session, conn = start(server.services)
    talk(session, conn, "EHLO client.test", "MAIL FROM:<a@remote.test>")
    assert talk(session, conn, "RCPT TO:<x@remote.test>") == [
        (554, "5.7.1 <x@remote.test>: Relay access denied")
    ]


def test_data_is_delivered_and_the_timeouts_follow_the_mode(smtp_server):
    server = smtp_server(smtp={"command_timeout": 30, "data_timeout": 60})
    session, conn = start(server.services)
    talk(session, conn, "EHLO client.test", "MAIL FROM:<a@remote.test>")
    talk(session, conn, "RCPT TO:<alice@example.test>")
    assert talk(session, conn, "DATA") == [(354, "End data with <CR><LF>.<CR><LF>")]
    assert conn.timeouts[-1] == 60
    replies = talk(session, conn, "Subject: hi", "", "body", ".")
    assert replies[0][0] == 250 and replies[0][1].startswith("2.0.0 Ok: queued as ")
    assert conn.timeouts[-1] == 30
    assert server.message("alice@example.test").endswith(b"Subject: hi\n\nbody\n")


def test_too_many_errors_421_and_close(smtp_server):
    server = smtp_server(limits={"bad_commands": 2})
    session, conn = start(server.services)
    talk(session, conn, "FOO", "BAR", "NOOP")
    assert conn.replies()[1:] == [
        (500, "5.5.2 Error: command not recognized"),
        (500, "5.5.2 Error: command not recognized"),
        (421, "4.7.0 mx.example.test Error: too many errors"),
    ]
    assert conn.closed and session.mode == "closed"


def test_pregreeting_talk_554_and_timeout_421(server):
    conn = Conn()
    session = SmtpSession(server.services, "smtp", conn)
    session.connected("192.0.2.7", False)
    on_reactor(session.feed, b"EHLO early\r\n")
    assert conn.replies() == [(554, "5.5.1 Error: pipelining before greeting")]
    assert conn.closed
    session, conn = start(server.services)
    session.timed_out()
    assert conn.replies()[-1] == (421, "4.4.2 mx.example.test Error: timeout exceeded")


LINES = [
    "EHLO x", "HELO x", "MAIL FROM:<a@remote.test>", "MAIL FROM:<> SIZE=10 SMTPUTF8",
    "RCPT TO:<alice@example.test>", "RCPT TO:<x%y@example.test>", "DATA", ".", "BDAT 3",
    "BDAT 0 LAST", "BDAT x", "RSET", "NOOP", "AUTH PLAIN", "AUTH LOGIN dXNlcg==", "AUTH X", "*",
    "=", "STARTTLS", "VRFY x", "HELP", "QUIT", "",
]  # fmt: skip
random_lines = st.lists(
    st.one_of(st.sampled_from(LINES).map(str.encode), st.binary(max_size=30)), max_size=25
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=random_lines, kind=st.sampled_from(["smtp", "submission"]), secure=st.booleans())
def test_random_lines_get_only_well_formed_replies(server, lines, kind, secure):
    services = dataclasses.replace(server.services, tls=None)

    def run():
        conn = Conn()
        session = SmtpSession(services, kind, conn)
        session.connected("192.0.2.7", secure)
        session.greet()
        for line in lines:
            session.feed(line + b"\r\n")
        session.connection_lost()
        return b"".join(conn.written)

    out = on_reactor(run)
    assert out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert REPLY_LINE.match(line), line
    assert b"internal error" not in out
