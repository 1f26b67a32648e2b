"""Bad input never crashes a session: random and half-valid byte streams fed to an SMTP connection.

The session runs on the reactor thread with an in-memory transport (no TLS: STARTTLS answers
454 here); every byte the server writes must be a well-formed reply line.
"""

import dataclasses
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailsuite.smtp.server import SmtpProtocol
from tests.conftest import on_reactor

REPLY_LINE = re.compile(rb"\A\d{3}[ -][^\r\n]*\Z")

FRAGMENTS = [
    b"EHLO x\r\n", b"HELO x\r\n", b"MAIL FROM:<a@remote.test>\r\n",
    b"MAIL FROM:<> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n", b"RCPT TO:<alice@example.test>\r\n",
    b"RCPT TO:<x%y@example.test>\r\n", b"DATA\r\n", b".\r\n", b"\r\n.\r\n", b"\n.\n",
    b"BDAT 5\r\n", b"BDAT 0 LAST\r\n", b"BDAT x\r\n", b"RSET\r\n", b"NOOP\r\n", b"AUTH PLAIN\r\n",
    b"AUTH LOGIN dXNlcg==\r\n", b"*\r\n", b"STARTTLS\r\n", b"VRFY x\r\n", b"QUIT\r\n",
    b"\xff\xfe\x00", b"\r", b"\n", b"A" * 600,
]  # fmt: skip

streams = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=40)), max_size=30)


def run_session(services, chunks) -> bytes:
    session = SmtpProtocol(dataclasses.replace(services, tls=None), "smtp")
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 4321))
    session.makeConnection(transport)
    for chunk in chunks:
        if transport.disconnecting:
            break
        session.dataReceived(chunk)
    session.connectionLost(None)
    return transport.value()


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=streams)
def test_random_streams_get_only_well_formed_replies(server, chunks):
    out = on_reactor(run_session, server.services, chunks)
    assert out.startswith(b"220 ")
    lines = out.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert REPLY_LINE.match(line), line
    assert b"internal error" not in out
