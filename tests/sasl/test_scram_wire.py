"""SCRAM-SHA-256 over real sockets on each protocol, with the independent client of
`scram_client.py`: SMTP submission after STARTTLS (RFC 4954: 334 server-final, then 235), IMAP
after STARTTLS and on 993 with SASL-IR (RFC 3501 §6.2.2, RFC 4959: "+ " server-final, the
client's empty line, then OK), POP3 after STLS (RFC 5034), and msmtp as a real client."""

from __future__ import annotations

import base64
import imaplib
import poplib
import shutil
import smtplib
import socket
import subprocess
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.sasl.scram_client import ScramClient

ALICE = "alice@example.test"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def unb64(text: str | bytes) -> bytes:
    return base64.b64decode(text)


def submission(server) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    s.starttls(context=client_tls_context())
    s.ehlo("client.test")
    assert "SCRAM-SHA-256" in s.esmtp_features["auth"].split()
    return s


def smtp_scram(s: smtplib.SMTP, password: str, *, tamper: bool = False) -> tuple[int, bytes]:
    client = ScramClient(ALICE, password)
    code, text = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(client.client_first()))
    if code != 334:
        return code, text
    code, text = s.docmd(b64(client.client_final(unb64(text), tamper=tamper)))
    if code != 334:
        return code, text
    assert client.verify(unb64(text))
    return s.docmd("")


def test_smtp_submission_after_starttls(mail_server):
    with submission(mail_server) as s:
        assert smtp_scram(s, DEFAULT_PASSWORD) == (235, b"2.7.0 Authentication successful")
        s.sendmail(ALICE, [ALICE], b"Subject: scram\r\n\r\nbody\r\n")


def test_smtp_without_initial_response_gets_an_empty_challenge(mail_server):
    client = ScramClient(ALICE, DEFAULT_PASSWORD)
    with submission(mail_server) as s:
        assert s.docmd("AUTH", "SCRAM-SHA-256") == (334, b"")
        code, server_first = s.docmd(b64(client.client_first()))
        assert code == 334
        code, server_final = s.docmd(b64(client.client_final(unb64(server_first))))
        assert code == 334 and client.verify(unb64(server_final))
        assert s.docmd("")[0] == 235


def test_smtp_wrong_password_counts_in_the_throttle(mail_server):
    accounts = mail_server.services.accounts
    for _ in range(3):  # auth.free_failures
        with submission(mail_server) as s:
            assert smtp_scram(s, "wrong")[0] == 535
    before = accounts.verifications
    with submission(mail_server) as s:
        # Throttled before the keys are even looked up; the right password too.
        assert smtp_scram(s, DEFAULT_PASSWORD)[0] == 454
    assert accounts.verifications == before


def test_smtp_tampered_proof_and_malformed_messages_fail_cleanly(mail_server):
    with submission(mail_server) as s:
        assert smtp_scram(s, DEFAULT_PASSWORD, tamper=True)[0] == 535
        # RFC 5802 §6: no channel binding here.
        first = b64(b"p=tls-unique,,n=alice@example.test,r=abc")
        assert s.docmd("AUTH", "SCRAM-SHA-256 " + first)[0] == 535
        assert s.docmd("AUTH", "SCRAM-SHA-256 " + b64(b"n,,junk"))[0] == 535
        assert s.docmd("AUTH", "SCRAM-SHA-256 not-base64!")[0] == 501
        code, _ = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(b"n,,n=alice@example.test,r=abc"))
        assert code == 334
        assert s.docmd(b64(b"c=biws,r=abc,p=AAAA"))[0] == 535  # not the combined nonce
        assert s.docmd("AUTH", "SCRAM-SHA-256 " + b64(b"n,,n=alice@example.test,r=abc"))[0] == 334
        assert s.docmd("*")[0] == 501  # RFC 4954 §4 cancel
        # The tampered proof, the bad nonce and the cancel after the key lookup each counted
        # (auth.free_failures is 3); the malformed first messages did not reach the throttle.
        assert smtp_scram(s, DEFAULT_PASSWORD)[0] == 454


class ScramAuthObject:
    """imaplib's authobject: called with each decoded challenge, returns the response."""

    def __init__(self, password: str, tamper: bool = False):
        self.client = ScramClient(ALICE, password)
        self.tamper = tamper
        self.step = 0
        self.verified = False

    def __call__(self, challenge: bytes) -> bytes:
        self.step += 1
        if self.step == 1:
            assert challenge == b""
            return self.client.client_first()
        if self.step == 2:
            return self.client.client_final(challenge, tamper=self.tamper)
        self.verified = self.client.verify(challenge)
        return b""


def test_imap_after_starttls(mail_server):
    c = imaplib.IMAP4("127.0.0.1", mail_server.port("imap"), timeout=10)
    assert "AUTH=SCRAM-SHA-256" not in c.capabilities and "LOGINDISABLED" in c.capabilities
    c.starttls(ssl_context=client_tls_context())
    assert "AUTH=SCRAM-SHA-256" in c.capabilities
    auth = ScramAuthObject(DEFAULT_PASSWORD)
    typ, _ = c.authenticate("SCRAM-SHA-256", auth)
    assert typ == "OK" and auth.verified and auth.step == 3
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_imap_wrong_and_tampered_fail_as_authenticationfailed(mail_server):
    for auth in (ScramAuthObject("wrong"), ScramAuthObject(DEFAULT_PASSWORD, tamper=True)):
        c = imaplib.IMAP4_SSL(
            "127.0.0.1", mail_server.port("imaps"), ssl_context=client_tls_context()
        )
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            c.authenticate("SCRAM-SHA-256", auth)
        c.logout()


class Line:
    """A line-oriented TLS connection (993) for the exact IMAP wire."""

    def __init__(self, port: int):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = client_tls_context().wrap_socket(sock)
        self.buf = b""
        self.line()

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line


def test_imaps_sasl_ir_and_the_exact_continuations(mail_server):
    client = ScramClient(ALICE, DEFAULT_PASSWORD)
    c = Line(mail_server.port("imaps"))
    c.send(b"a AUTHENTICATE SCRAM-SHA-256 " + b64(client.client_first()).encode())
    server_first = c.line()
    assert server_first.startswith(b"+ ")
    c.send(b64(client.client_final(unb64(server_first[2:]))).encode())
    server_final = c.line()
    assert server_final.startswith(b"+ ") and client.verify(unb64(server_final[2:]))
    c.send(b"")
    assert c.line().startswith(b"a OK [CAPABILITY ")
    # Malformed: a p= header is refused, garbage too, and the connection goes on.
    c = Line(mail_server.port("imaps"))
    c.send(b"b AUTHENTICATE SCRAM-SHA-256 " + b64(b"p=tls-unique,,n=x,r=y").encode())
    assert c.line().startswith(b"b BAD ")
    c.send(b"d AUTHENTICATE SCRAM-SHA-256")
    assert c.line() == b"+ "
    c.send(b"*")
    assert c.line().startswith(b"d BAD ")
    c.send(b"e NOOP")
    assert c.line().startswith(b"e OK")


def pop3_stls(server) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    p.stls(context=client_tls_context())
    assert "SCRAM-SHA-256" in p.capa()["SASL"]
    return p


def test_pop3_after_stls(mail_server):
    client = ScramClient(ALICE, DEFAULT_PASSWORD)
    p = pop3_stls(mail_server)
    server_first = p._shortcmd("AUTH SCRAM-SHA-256 " + b64(client.client_first()))
    assert server_first.startswith(b"+ ")
    server_final = p._shortcmd(b64(client.client_final(unb64(server_first[2:]))))
    assert server_final.startswith(b"+ ") and client.verify(unb64(server_final[2:]))
    assert p._shortcmd("").startswith(b"+OK")
    assert p.stat() == (0, 0)
    p.quit()


def test_pop3_tampered_proof_and_malformed_fail(mail_server):
    p = pop3_stls(mail_server)
    client = ScramClient(ALICE, DEFAULT_PASSWORD)
    p._putcmd("AUTH SCRAM-SHA-256")
    assert p._getline()[0] == b"+ "
    server_first = p._shortcmd(b64(client.client_first()))
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd(b64(client.client_final(unb64(server_first[2:]), tamper=True)))
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd("AUTH SCRAM-SHA-256 " + b64(b"p=tls-unique,,n=x,r=y"))
    with pytest.raises(poplib.error_proto):
        p._shortcmd("AUTH SCRAM-SHA-256 " + b64(b"\xff\xfe"))
    p.quit()


@pytest.mark.skipif(shutil.which("msmtp") is None, reason="msmtp is not installed")
def test_msmtp_submits_with_scram_sha_256(mail_server, tmp_path):
    log = tmp_path / "msmtp.log"
    argv = [
        "msmtp",
        "--host=127.0.0.1",
        f"--port={mail_server.port('submission')}",
        "--tls=on",
        "--tls-starttls=on",
        "--tls-certcheck=off",
        "--auth=scram-sha-256",
        f"--user={ALICE}",
        f"--passwordeval=echo {DEFAULT_PASSWORD}",
        f"--from={ALICE}",
        f"--logfile={log}",
        "--debug",
        ALICE,
    ]
    message = b"From: alice@example.test\r\nSubject: via msmtp scram\r\n\r\nhello\r\n"
    done = subprocess.run(argv, input=message, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"AUTH SCRAM-SHA-256" in done.stdout + done.stderr
    for _ in range(100):
        if any(b"via msmtp scram" in m for m in mail_server.messages(ALICE)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the message was not delivered")


def test_a_connection_lost_mid_exchange_gives_the_slot_back(mail_server):
    """SMTP, POP3 and IMAP abort the dialogue when the client goes away after the server-first
    message: the throttle slot is free at once (counted as a failure), not after the proof's
    time limit."""
    authn = mail_server.services.authenticator
    s = submission(mail_server)
    code, _ = s.docmd("AUTH", "SCRAM-SHA-256 " + b64(ScramClient(ALICE, "x").client_first()))
    assert code == 334 and authn._in_flight
    s.close()
    p = pop3_stls(mail_server)
    for _ in range(100):
        if not authn._in_flight:
            break
        time.sleep(0.05)
    assert not authn._in_flight
    assert p._shortcmd("AUTH SCRAM-SHA-256 " + b64(ScramClient(ALICE, "x").client_first()))
    assert authn._in_flight
    p.close()
    for _ in range(100):
        if not authn._in_flight:
            break
        time.sleep(0.05)
    assert not authn._in_flight
    # IMAP (993): the session's close aborts the AUTHENTICATE in progress.
    c = Line(mail_server.port("imaps"))
    first = ScramClient(ALICE, "x").client_first()
    c.send(b"a AUTHENTICATE SCRAM-SHA-256 " + b64(first).encode())
    assert c.line().startswith(b"+ ") and authn._in_flight
    c.sock.close()
    for _ in range(100):
        if not authn._in_flight:
            break
        time.sleep(0.05)
    assert not authn._in_flight
