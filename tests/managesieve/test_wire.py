"""ManageSieve on the wire with a raw socket (RFC 5804): the capability response before and
after TLS, the clear-text password policy, SASL (PLAIN, SCRAM-SHA-256, cancel), literals in
both forms and their bounds, response codes, bad commands and the time limits."""

from __future__ import annotations

import base64
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.managesieve.conftest import ALICE, LISTENERS, RawSieve, logged_in, plain_auth
from tests.sasl.scram_client import ScramClient

SCRIPT = b'require "fileinto";\r\nfileinto "Archive";\r\n'


def literal(data: bytes, plus: bool = True) -> bytes:
    return b"{%d%s}\r\n" % (len(data), b"+" if plus else b"") + data


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def unquote(line: bytes) -> bytes:
    assert line.startswith(b'"') and line.endswith(b'"'), line
    return line[1:-1]


def test_greeting_before_tls_offers_starttls_and_no_mechanisms(raw):
    c = raw()
    # RFC 5804 §1.7: SASL may be empty only while STARTTLS is offered.
    assert b'"SASL" ""' in c.greeting
    assert b'"STARTTLS"' in c.greeting
    assert not any(line.startswith(b'"OWNER"') for line in c.greeting)
    assert c.greeting[-1].startswith(b"OK")


def test_starttls_sends_the_capabilities_again_with_mechanisms(raw):
    c = raw()
    caps = c.starttls()
    # RFC 5804 §2.2: the capability response follows the handshake unasked.
    assert b'"SASL" "PLAIN LOGIN SCRAM-SHA-256"' in caps
    assert b'"STARTTLS"' not in caps
    assert caps[-1].startswith(b"OK")
    assert c.final(b"STARTTLS").startswith(b"NO")


def test_plaintext_authenticate_is_refused_without_tls(raw, sieve_server, alice):
    c = raw()
    before = sieve_server.services.accounts.verifications
    assert (
        c.final(plain_auth(alice))
        == b'NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed without TLS."'
    )
    assert sieve_server.services.accounts.verifications == before


def test_plaintext_sent_after_starttls_is_never_run(raw, alice):
    c = raw()
    # The AUTHENTICATE and LISTSCRIPTS pipelined in clear behind STARTTLS are dropped.
    c.send(b"STARTTLS\r\n" + plain_auth(alice) + b"\r\nLISTSCRIPTS\r\n")
    assert c.response()[-1].startswith(b"OK")
    c.sock = client_tls_context().wrap_socket(c.sock, server_hostname="mail.example.test")
    assert c.response()[-1].startswith(b"OK")
    assert c.final(b"LISTSCRIPTS") == b'NO "Authenticate first."'


def test_script_commands_need_a_login(raw):
    c = raw()
    for command in (b'GETSCRIPT "a"', b"LISTSCRIPTS", b'SETACTIVE ""', b"UNAUTHENTICATE"):
        assert c.final(command) == b'NO "Authenticate first."'


def test_initial_response_as_a_literal_and_the_sync_literal_form(raw, alice):
    c = raw()
    c.starttls()
    token = b64(b"\0" + alice.encode() + b"\0" + DEFAULT_PASSWORD.encode())
    # {n} (without "+") is taken like {n+}: ManageSieve has no continuation to wait for.
    assert c.final(b'AUTHENTICATE "PLAIN" ' + literal(token, plus=False)) == b'OK "Logged in."'
    assert c.final(b'PUTSCRIPT "a" ' + literal(SCRIPT, plus=False)) == b'OK "Script stored."'
    assert c.command(b'GETSCRIPT "a"') == [
        b"{%d}\r\n" % len(SCRIPT) + SCRIPT,
        b'OK "Getscript completed."',
    ]


def test_plain_challenge_when_no_initial_response(raw, alice):
    c = raw()
    c.starttls()
    c.send(b'AUTHENTICATE "PLAIN"\r\n')
    assert c.line() == b'""'
    token = b64(b"\0" + alice.encode() + b"\0" + DEFAULT_PASSWORD.encode())
    assert c.final(b'"' + token + b'"') == b'OK "Logged in."'


def test_scram_sha_256_with_the_server_final_in_the_ok(raw, alice):
    c = raw()
    c.starttls()
    scram = ScramClient(alice, DEFAULT_PASSWORD)
    c.send(b'AUTHENTICATE "SCRAM-SHA-256" "' + b64(scram.client_first()) + b'"\r\n')
    server_first = base64.b64decode(unquote(c.line()))
    response = c.final(b'"' + b64(scram.client_final(server_first)) + b'"')
    # RFC 5804 §2.1: OK (SASL "<server-final>") ends the exchange.
    assert response.startswith(b'OK (SASL "') and response.endswith(b'") "Logged in."')
    assert scram.verify(base64.b64decode(response[len(b'OK (SASL "') : -len(b'") "Logged in."')]))
    assert c.final(b"LISTSCRIPTS").startswith(b"OK")


def test_scram_sha_256_wrong_password(raw, alice):
    c = raw()
    c.starttls()
    scram = ScramClient(alice, "wrong")
    c.send(b'AUTHENTICATE "SCRAM-SHA-256" "' + b64(scram.client_first()) + b'"\r\n')
    server_first = base64.b64decode(unquote(c.line()))
    response = c.final(b'"' + b64(scram.client_final(server_first)) + b'"')
    assert response == b'NO "Authentication failed."'


def test_cancelled_authentication(raw, alice):
    c = raw()
    c.starttls()
    c.send(b'AUTHENTICATE "LOGIN"\r\n')
    assert c.line().startswith(b'"')
    # RFC 5804 §2.1: "*" cancels and the server answers NO.
    assert c.final(b'"*"') == b'NO "Authentication cancelled."'
    assert c.final(plain_auth(alice)) == b'OK "Logged in."'


def test_unknown_mechanism(raw):
    c = raw()
    c.starttls()
    assert c.final(b'AUTHENTICATE "GSSAPI"') == b'NO "Unsupported authentication mechanism."'


def test_failed_logins_are_throttled_before_the_password_check(raw, sieve_server, alice):
    accounts = sieve_server.services.accounts
    c = raw()
    c.starttls()
    for _ in range(3):  # auth.free_failures
        assert c.final(plain_auth(alice, password="wrong")) == b'NO "Authentication failed."'
    before = accounts.verifications
    # The right password too: the throttle answers before anything is checked.
    response = c.final(plain_auth(alice))
    assert response.startswith(b'NO (TRYLATER) "Too many failed logins')
    assert accounts.verifications == before


def test_literal_over_the_bound_before_login_closes(raw):
    c = raw()
    c.starttls()
    c.send(b'AUTHENTICATE "PLAIN" {100000+}\r\n' + b"A" * 1000)
    assert c.response() == [b'BYE "Literal too large before authentication."']
    assert c.closed()


def test_script_over_the_size_limit_is_read_past_and_refused(raw, alice):
    c = logged_in(raw, alice)
    # The literal holds command lines: none of them may run.
    body = (b"LOGOUT\r\n" + b"#" * 1000 + b"\r\n") * 70
    response = c.final(b'PUTSCRIPT "big" ' + literal(body))
    assert response.startswith(b'NO (QUOTA/MAXSIZE) "Script larger than 65536 octets')
    assert c.final(b"NOOP") == b'OK "Done"'
    assert c.final(b"LISTSCRIPTS") == b'OK "Listscripts completed."'


def test_quotas_follow_the_sieve_settings(server_factory):
    srv = server_factory(listen=LISTENERS, sieve={"max_scripts": 3, "max_script_size": 100})
    srv.add_user(ALICE)
    c = RawSieve(srv.port("managesieve"))
    c.starttls()
    assert c.final(plain_auth(ALICE)).startswith(b"OK")
    for i in range(3):
        assert c.final(b'PUTSCRIPT "s%d" ' % i + literal(b"keep;")).startswith(b"OK")
    assert c.final(b'HAVESPACE "new" 10').startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert c.final(b'HAVESPACE "s1" 10') == b'OK "Putscript would succeed."'
    assert c.final(b'HAVESPACE "s1" 101').startswith(b"NO (QUOTA/MAXSIZE)")
    assert c.final(b'PUTSCRIPT "new" ' + literal(b"keep;")).startswith(b"NO (QUOTA/MAXSCRIPTS)")
    # Replacing a script is not one more.
    assert c.final(b'PUTSCRIPT "s1" ' + literal(b"discard;")).startswith(b"OK")
    big = b"#" * 200 + b"\r\nkeep;"
    assert c.final(b'PUTSCRIPT "s1" ' + literal(big)).startswith(b"NO (QUOTA/MAXSIZE)")
    c.close()


def test_putscript_error_gives_the_line_number(raw, alice):
    c = logged_in(raw, alice)
    response = c.final(b'PUTSCRIPT "x" ' + literal(b'require "fileinto";\r\nfileinto;\r\n'))
    assert response.startswith(b'NO "line 2: ')


def test_noop_returns_its_tag(raw):
    c = raw()
    assert c.final(b'NOOP "STARTTLS-SYNC-42"') == b'OK (TAG "STARTTLS-SYNC-42") "Done"'
    assert c.final(b"NOOP " + literal(b'a"b')) == b'OK (TAG "a\\"b") "Done"'


def test_unauthenticate_returns_to_the_greeting_state(raw, alice):
    c = logged_in(raw, alice)
    caps = c.command(b"CAPABILITY")
    assert b'"OWNER" "%s"' % alice.encode() in caps
    assert c.final(b"UNAUTHENTICATE") == b'OK "Unauthenticate completed."'
    assert c.final(b"LISTSCRIPTS") == b'NO "Authenticate first."'
    assert not any(line.startswith(b'"OWNER"') for line in c.command(b"CAPABILITY"))
    assert c.final(plain_auth(alice)) == b'OK "Logged in."'


def test_malformed_commands_get_no_and_the_session_goes_on(raw, alice):
    c = logged_in(raw, alice)
    assert c.final(b'GETSCRIPT "unterminated') == b'NO "Unterminated quoted string."'
    assert c.final(b'GETSCRIPT "bad\\escape"') == b'NO "Invalid escape in quoted string."'
    assert c.final(b'HAVESPACE "a" many') == b'NO "The size must be a number."'
    assert c.final(b"NOOP") == b'OK "Done"'


def test_too_many_bad_commands_close_the_session(raw):
    c = raw()
    for _ in range(4):
        assert c.final(b"XYZZY") == b'NO "Unknown command."'
    assert c.command(b"XYZZY") == [b'NO "Unknown command."']
    assert c.line() == b'BYE "Too many bad commands, closing."'
    assert c.closed()


def test_overlong_line_is_refused_and_its_literal_not_run(raw, alice):
    c = logged_in(raw, alice)
    c.send(b"PUTSCRIPT " + b"x" * 10000 + b" " + literal(b"LOGOUT\r\n") + b"\r\n")
    assert c.response() == [b'NO "Command line too long."']
    assert c.final(b"NOOP") == b'OK "Done"'


def test_pipelined_commands_are_all_answered_in_order(raw):
    c = raw()
    c.send(b"".join(b'NOOP "%d"\r\n' % i for i in range(300)))
    for i in range(300):
        assert c.response() == [b'OK (TAG "%d") "Done"' % i]


def test_logout(raw):
    c = raw()
    assert c.final(b"LOGOUT") == b'OK "Logout completed."'
    assert c.closed()


@pytest.mark.parametrize("setting", ["login_deadline", "idle_timeout"])
def test_time_limits(server_factory, setting):
    srv = server_factory(listen=LISTENERS, managesieve={setting: 1})
    c = RawSieve(srv.port("managesieve"))
    start = time.monotonic()
    if setting == "login_deadline":
        # Steady input does not keep a connection that never logs in.
        while True:
            response = c.command(b"NOOP")
            if response[-1].startswith(b"BYE"):
                break
            time.sleep(0.2)
        assert response[-1] == b'BYE "No login in time, closing connection."'
    else:
        assert c.response() == [b'BYE "Disconnected for inactivity."']
    assert 0.9 < time.monotonic() - start < 5
    assert c.closed()
    c.close()


def test_unauthenticate_starts_a_new_login_deadline(server_factory):
    srv = server_factory(listen=LISTENERS, managesieve={"login_deadline": 2})
    srv.add_user(ALICE)
    c = RawSieve(srv.port("managesieve"))
    c.starttls()
    assert c.final(plain_auth(ALICE)) == b'OK "Logged in."'
    time.sleep(2.5)  # past the first deadline: logged in, so it does not apply
    assert c.final(b"UNAUTHENTICATE") == b'OK "Unauthenticate completed."'
    start = time.monotonic()
    assert c.response() == [b'BYE "No login in time, closing connection."']
    assert 1.5 < time.monotonic() - start < 5
    c.close()
