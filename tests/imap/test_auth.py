"""Greeting, CAPABILITY, LOGIN, AUTHENTICATE (PLAIN/LOGIN, SASL-IR), STARTTLS and 993."""

import base64
import imaplib
import ssl

import pytest

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import IMAP_ONLY, USER, Raw


def _ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_login_and_capabilities_after_login(imap):
    typ, caps = imap.capability()
    caps = caps[0].decode().split()
    for cap in ("IMAP4rev1", "IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "LITERAL+"):
        assert cap in caps
    assert "STARTTLS" not in caps and "AUTH=PLAIN" not in caps


def test_wrong_password_is_no_authenticationfailed(imap_server):
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        c.login(USER, "wrong")
    c.logout()


def test_authenticate_plain_with_initial_response_rfc4959(imap_server):
    r = Raw(imap_server.port("imap"))
    ir = base64.b64encode(f"\0{USER}\0{DEFAULT_PASSWORD}".encode())
    out = r.cmd(b"AUTHENTICATE PLAIN " + ir)
    assert out[-1].startswith(b"t OK [CAPABILITY "), out
    assert r.cmd(b"SELECT INBOX")[-1].startswith(b"t OK [READ-WRITE]")


def test_authenticate_login_with_challenges(imap_server):
    r = Raw(imap_server.port("imap"))
    r.send(b"a AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ " + base64.b64encode(b"Username:")
    r.send(base64.b64encode(USER.encode()) + b"\r\n")
    assert r.line() == b"+ " + base64.b64encode(b"Password:")
    r.send(base64.b64encode(DEFAULT_PASSWORD.encode()) + b"\r\n")
    assert r.line().startswith(b"a OK")


def test_authenticate_cancelled_with_star(imap_server):
    r = Raw(imap_server.port("imap"))
    r.send(b"a AUTHENTICATE PLAIN\r\n")
    assert r.line() == b"+ "
    r.send(b"*\r\n")
    assert r.line().startswith(b"a BAD")
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")


def test_commands_before_login_are_refused(imap_server):
    r = Raw(imap_server.port("imap"))
    assert r.cmd(b"SELECT INBOX")[-1].startswith(b"t BAD")
    assert r.cmd(b"FOO")[-1].startswith(b"t BAD")


def test_logindisabled_before_starttls_and_login_after(server_factory):
    srv = server_factory(listen=IMAP_ONLY)  # auth.plaintext = "never"
    srv.add_user(USER)
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    assert "LOGINDISABLED" in c.capabilities and "STARTTLS" in c.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        c.login(USER, DEFAULT_PASSWORD)
    c.starttls(_ctx())
    assert "LOGINDISABLED" not in c.capabilities and "AUTH=PLAIN" in c.capabilities
    assert c.login(USER, DEFAULT_PASSWORD)[0] == "OK"
    c.logout()


def test_imaps_port_993(server_factory):
    srv = server_factory(listen=IMAP_ONLY)
    srv.add_user(USER)
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=_ctx(), timeout=10)
    assert "STARTTLS" not in c.capabilities
    assert c.login(USER, DEFAULT_PASSWORD)[0] == "OK"
    c.logout()


def test_plaintext_pipelined_after_starttls_is_discarded(server_factory):
    """RFC 3501 §6.2.1 / DESIGN.md: bytes after STARTTLS and before the handshake never run."""
    srv = server_factory(listen=IMAP_ONLY)
    srv.add_user(USER)
    r = Raw(srv.port("imap"))
    r.send(b"a STARTTLS\r\nb LOGIN x y\r\nc CAPABILITY\r\n")
    assert r.line().startswith(b"a OK")
    sock = _ctx().wrap_socket(r.sock)
    sock.sendall(b"d CAPABILITY\r\n")
    data = b""
    while b"d OK" not in data:
        chunk = sock.recv(4096)
        assert chunk
        data += chunk
    assert b"b " not in data and b"c OK" not in data
    assert b"AUTH=PLAIN" in data


def test_too_many_bad_commands_end_with_bye(imap_server):
    r = Raw(imap_server.port("imap"))
    lines = []
    for i in range(5):
        r.send(b"x%d BLAH\r\n" % i)
    try:
        while True:
            lines.append(r.line())
    except (EOFError, OSError):
        pass
    assert any(line.startswith(b"* BYE") for line in lines)


def test_failed_logins_count_with_the_bad_commands_that_close_a_session(server_factory):
    """One connection cannot try passwords for ever: refused logins (wrong, or held back by
    the throttle) count toward limits.bad_commands, as POP3's and SMTP's errors do."""
    srv = server_factory(
        listen=IMAP_ONLY,
        auth={"plaintext": "loopback", "free_failures": 10},
        limits={"bad_commands": 3},
    )
    srv.add_user(USER)
    r = Raw(srv.port("imap"))
    for tag in (b"a", b"b"):
        out = r.cmd(f'LOGIN {USER} "wrong"'.encode(), tag)
        assert out[-1].startswith(tag + b" NO ")
    r.send(f'c LOGIN {USER} "wrong"\r\n'.encode())
    lines = []
    try:
        while True:
            lines.append(r.line())
    except (EOFError, OSError):
        pass
    assert lines[0].startswith(b"c NO ") and lines[1] == b"* BYE Too many invalid commands"
    # Another connection still logs in (the count is the connection's, not the account's).
    good = Raw(srv.port("imap"))
    good.login()


def test_connections_per_ip_are_limited(server_factory):
    srv = server_factory(listen=IMAP_ONLY, limits={"connections_per_ip": 2})
    first, second = Raw(srv.port("imap")), Raw(srv.port("imap"))
    third = Raw(srv.port("imap"))
    assert third.greeting.startswith(b"* BYE")
    assert first.cmd(b"NOOP")[-1].startswith(b"t OK") and second.greeting.startswith(b"* OK")
    first.close()


def test_failed_logins_go_through_the_common_throttle(server_factory):
    srv = server_factory(
        listen=IMAP_ONLY,
        auth={"plaintext": "loopback", "free_failures": 1, "base_delay": 30.0},
    )
    srv.add_user(USER)
    r = Raw(srv.port("imap"))
    assert r.cmd(f'LOGIN {USER} "wrong"'.encode())[-1].startswith(b"t NO [AUTHENTICATIONFAILED]")
    # Past the free failures the next attempt must wait: even the right password is refused.
    out = r.cmd(f'LOGIN {USER} "{DEFAULT_PASSWORD}"'.encode())
    assert out[-1].startswith(b"t NO [UNAVAILABLE]")


def test_rfc3501_authenticate_refusals_bad_and_no(imap_server):
    r = Raw(imap_server.port("imap"))
    assert r.cmd(b"AUTHENTICATE CRAM-MD5") == [b"t NO Unsupported authentication mechanism"]
    assert r.cmd(b"AUTHENTICATE PLAIN !!") == [b"t BAD Invalid base64 in initial response"]
    assert r.cmd(b"AUTHENTICATE PLAIN *") == [b"t BAD Invalid base64 in initial response"]
    malformed = base64.b64encode(b"no separators")
    assert r.cmd(b"AUTHENTICATE PLAIN " + malformed) == [
        b"t BAD Authentication failed: malformed PLAIN response"
    ]
    # RFC 4616 §2: no proxy authorization.
    other = base64.b64encode(f"bob@example.test\0{USER}\0{DEFAULT_PASSWORD}".encode())
    assert r.cmd(b"AUTHENTICATE PLAIN " + other) == [
        b"t NO [AUTHORIZATIONFAILED] Authorization identity not permitted"
    ]
    r.send(b"a AUTHENTICATE LOGIN\r\n")
    assert r.line() == b"+ " + base64.b64encode(b"Username:")
    r.send(b"!!\r\n")
    assert r.line() == b"a BAD Invalid base64 in response"
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
