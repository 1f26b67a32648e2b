"""The address a mail program was configured with logs in, subaddress included: autoconfig
hands out what the user typed (alice+lists@example.test), and every protocol's login resolves
it to the user as delivery does, in one place (accounts)."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket

import pytest

from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.sasl.scram_client import ScramClient

TAGGED = "alice+lists@example.test"


@pytest.fixture
def server(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user("alice@example.test")
    return srv


def test_imap_login_with_a_subaddress(server):
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    typ, _ = c.login(TAGGED, DEFAULT_PASSWORD)
    assert typ == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(TAGGED, "wrong-password")


def test_imap_scram_with_a_subaddress(server):
    """SCRAM-SHA-256 (RFC 5802): the keys are the base user's, the proof covers the name sent."""
    client = ScramClient(TAGGED, DEFAULT_PASSWORD)
    with socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10) as raw:
        with client_tls_context().wrap_socket(raw) as tls:
            reader = tls.makefile("rb")
            assert reader.readline().startswith(b"* OK")
            first = base64.b64encode(client.client_first())
            tls.sendall(b"a AUTHENTICATE SCRAM-SHA-256 " + first + b"\r\n")
            server_first = reader.readline().rstrip(b"\r\n")
            assert server_first.startswith(b"+ "), server_first
            final = client.client_final(base64.b64decode(server_first[2:]))
            tls.sendall(base64.b64encode(final) + b"\r\n")
            server_final = reader.readline().rstrip(b"\r\n")
            assert server_final.startswith(b"+ "), server_final
            assert client.verify(base64.b64decode(server_final[2:]))
            tls.sendall(b"\r\n")
            assert reader.readline().startswith(b"a OK")


def test_pop3_and_smtp_login_with_a_subaddress(server):
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    p.user(TAGGED)
    assert p.pass_(DEFAULT_PASSWORD).startswith(b"+OK")
    p.quit()
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        s.ehlo()
        assert s.login(TAGGED, DEFAULT_PASSWORD)[0] == 235


def test_an_unknown_base_user_still_fails(server):
    c = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        c.login("bob+lists@example.test", DEFAULT_PASSWORD)
