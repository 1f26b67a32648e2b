"""STARTTLS, LOGIN and AUTHENTICATE (RFC 3501 §6.2, RFC 4959 SASL-IR, RFC 4616 PLAIN)."""

from __future__ import annotations

import base64
import binascii

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.imap import response as R
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.store import NoSuchMailbox

log = Logger(namespace="mailsuite.imap")


def _text(value, what: str) -> str:
    if isinstance(value, list) or value is None:
        raise ImapBad(f"Invalid {what}")
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ImapBad(f"{what} is not UTF-8") from None
    return str(value)


def starttls(session, cmd):
    if cmd.args:
        raise ImapBad("STARTTLS takes no arguments")
    if session.secure:
        raise ImapBad("TLS is already active")
    if session.services.tls is None:
        raise ImapNo("TLS is not available")
    session.send(R.tagged(cmd.tag, "OK", "Begin TLS negotiation now"))
    session.flush()
    session.protocol.start_tls()
    return R.ALREADY_ANSWERED


def _check_plaintext(session) -> None:
    if not session.plaintext_allowed():
        # RFC 3501 §6.2.3 / §7.2.1 LOGINDISABLED; RFC 5530 PRIVACYREQUIRED.
        raise ImapNo("PRIVACYREQUIRED", "Plaintext authentication disallowed without TLS")


def login(session, cmd):
    if len(cmd.args) != 2:
        raise ImapBad("LOGIN needs user name and password")
    username = _text(cmd.args[0], "user name")
    password = _text(cmd.args[1], "password")
    _check_plaintext(session)
    return _authenticate(session, username, password)


def _authenticate(session, username: str, password: str, authzid: str = "") -> defer.Deferred:
    if authzid and authzid.lower() != username.lower():
        # We support no proxy authorization (RFC 4616 §2).
        return defer.fail(ImapNo("AUTHORIZATIONFAILED", "Authorization identity not permitted"))
    d = defer.maybeDeferred(
        session.services.authenticator.login, username, password, session.client_ip, "imap"
    )

    def ok(address: str):
        try:
            session.logged_in(address)
        except NoSuchMailbox:
            log.warn("login of {user} without a mailbox", user=address)
            raise ImapNo("UNAVAILABLE", "Mailbox is not available") from None
        caps = " ".join(session.capabilities())
        return ("CAPABILITY " + caps, "Logged in")

    def failed(failure):
        name = type(failure.value).__name__
        if name == "AuthThrottled":
            raise ImapNo("UNAVAILABLE", "Too many failed logins, try again later")
        if name in ("AuthFailed", "UnauthorizedLogin"):
            raise ImapNo("AUTHENTICATIONFAILED", "Authentication failed")
        if name == "NoSuchMailbox":
            raise ImapNo("UNAVAILABLE", "Mailbox is not available")
        return failure

    d.addCallbacks(ok, failed)
    return d


def authenticate(session, cmd):
    if not cmd.args or not isinstance(cmd.args[0], Atom) or len(cmd.args) > 2:
        raise ImapBad("AUTHENTICATE needs a mechanism name")
    try:
        mech = sasl.mechanism(cmd.args[0])
    except sasl.SaslError:
        raise ImapNo("Unsupported authentication mechanism") from None
    _check_plaintext(session)
    initial = None
    if len(cmd.args) == 2:
        # RFC 4959 §3: initial response, "=" for an empty one.
        raw = cmd.args[1]
        if isinstance(raw, list):
            raise ImapBad("Invalid initial response")
        try:
            initial = sasl.decode_response(raw if isinstance(raw, bytes) else raw.encode())
        except sasl.SaslError:
            raise ImapBad("Invalid base64 in initial response") from None
    done: defer.Deferred = defer.Deferred()
    _sasl_step(session, cmd, mech, lambda: mech.start(initial), done)
    return done


def _sasl_step(session, cmd, mech, step, done: defer.Deferred) -> None:
    try:
        result = step()
    except sasl.SaslCancelled:
        session.line_handler = None
        done.errback(ImapBad("Authentication cancelled"))
        return
    except sasl.SaslError as e:
        session.line_handler = None
        done.errback(ImapBad(f"Authentication failed: {e}"))
        return
    if isinstance(result, sasl.Challenge):
        session.send(b"+ " + base64.b64encode(result.data) + b"\r\n")
        session.flush()

        def on_line(line: bytes):
            session.line_handler = None
            try:
                # RFC 3501 §6.2.2: "*" cancels; otherwise base64 (an empty line is empty data).
                data = sasl.decode_response(line) if line.strip() else b""
            except sasl.SaslCancelled:
                done.errback(ImapBad("Authentication cancelled"))
                return None
            except (sasl.SaslError, binascii.Error):
                done.errback(ImapBad("Invalid base64 in response"))
                return None
            _sasl_step(session, cmd, mech, lambda: mech.step(data), done)
            return None

        session.line_handler = on_line
        return
    session.line_handler = None
    d = _authenticate(session, result.username, result.password, result.authzid)
    d.chainDeferred(done)
