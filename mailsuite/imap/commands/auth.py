"""STARTTLS, LOGIN and AUTHENTICATE (RFC 3501 §6.2, RFC 4959 SASL-IR, RFC 4616 PLAIN)."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.imap import response as R
from mailsuite.imap.parser import Atom, ImapBad, ImapNo, LoginFailed
from mailsuite.logtext import visible
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
    session.services.metrics.tls_started(session.kind)
    return R.ALREADY_ANSWERED


def _privacy_required() -> ImapNo:
    # RFC 3501 §6.2.3 / §7.2.1 LOGINDISABLED; RFC 5530 PRIVACYREQUIRED.
    return ImapNo("PRIVACYREQUIRED", "Plaintext authentication disallowed without TLS")


def _check_plaintext(session) -> None:
    if not session.plaintext_allowed():
        raise _privacy_required()


def login(session, cmd):
    if len(cmd.args) != 2:
        raise ImapBad("LOGIN needs user name and password")
    username = _text(cmd.args[0], "user name")
    password = _text(cmd.args[1], "password")
    _check_plaintext(session)
    return _authenticate(session, username, password)


def _authenticate(session, username: str, password: str) -> defer.Deferred:
    d = defer.maybeDeferred(
        session.services.authenticator.login, username, password, session.client_ip, "imap"
    )
    return _login_result(session, d)


def _login_result(session, d: defer.Deferred) -> defer.Deferred:
    """The tagged reply to a login (LOGIN or AUTHENTICATE) once the Authenticator answers."""

    def ok(address: str):
        try:
            session.logged_in(address)
        except NoSuchMailbox:
            log.warn("login of {user} without a mailbox", user=visible(address))
            raise ImapNo("UNAVAILABLE", "Mailbox is not available") from None
        caps = " ".join(session.capabilities())
        return ("CAPABILITY " + caps, "Logged in")

    def failed(failure):
        name = type(failure.value).__name__
        if name == "AuthThrottled":
            raise LoginFailed("UNAVAILABLE", "Too many failed logins, try again later")
        if name in ("AuthFailed", "UnauthorizedLogin"):
            raise LoginFailed("AUTHENTICATIONFAILED", "Authentication failed")
        if name == "NoSuchMailbox":
            raise ImapNo("UNAVAILABLE", "Mailbox is not available")
        return failure

    d.addCallbacks(ok, failed)
    return d


def authenticate(session, cmd):
    if not cmd.args or not isinstance(cmd.args[0], Atom) or len(cmd.args) > 2:
        raise ImapBad("AUTHENTICATE needs a mechanism name")
    initial = None
    if len(cmd.args) == 2:
        # RFC 4959 §3: initial response, "=" for an empty one.
        initial = cmd.args[1]
        if isinstance(initial, list):
            raise ImapBad("Invalid initial response")
    dialogue = sasl.SaslDialogue(
        session.services.authenticator,
        session.client_ip,
        "imap",
        plaintext_allowed=session.plaintext_allowed(),
    )
    outcome = dialogue.start(cmd.args[0], initial)
    if isinstance(outcome, sasl.UnknownMechanism):
        raise ImapNo("Unsupported authentication mechanism")
    if isinstance(outcome, sasl.EncryptionRequired):
        raise _privacy_required()
    if isinstance(outcome, (sasl.Cancelled, sasl.BadEncoding)):
        raise ImapBad("Invalid base64 in initial response")
    done: defer.Deferred = defer.Deferred()
    session.sasl = dialogue
    done.addBoth(_finished, session)
    _answer(session, dialogue, outcome, done)
    return done


def _finished(result, session):
    session.sasl = None
    return result


def _answer(session, dialogue: sasl.SaslDialogue, outcome: sasl.Outcome, done) -> None:
    """The IMAP wire form of one dialogue outcome: `+ challenge`, BAD, or the login."""
    session.line_handler = None
    if isinstance(outcome, sasl.SendChallenge):
        session.send(b"+ " + outcome.encoded + b"\r\n")
        session.flush()

        def on_line(line: bytes):
            # RFC 3501 §6.2.2: "*" cancels; otherwise base64 (an empty line is empty data).
            _answer(session, dialogue, dialogue.respond(line), done)

        session.line_handler = on_line
    elif isinstance(outcome, sasl.Pending):
        # SCRAM's key lookup; the command stays in progress (no line is read) until it is in.
        def resumed(next_outcome: sasl.Outcome) -> None:
            if session.protocol.closed:
                dialogue.abort()
                done.errback(ImapBad("Connection closed"))
                return
            _answer(session, dialogue, next_outcome, done)

        outcome.deferred.addCallback(resumed).addErrback(done.errback)
    elif isinstance(outcome, sasl.Cancelled):
        done.errback(ImapBad("Authentication cancelled"))
    elif isinstance(outcome, sasl.BadEncoding):
        done.errback(ImapBad("Invalid base64 in response"))
    elif isinstance(outcome, sasl.BadResponse):
        done.errback(ImapBad(f"Authentication failed: {outcome.reason}"))
    elif isinstance(outcome, sasl.IdentityRefused):
        done.errback(ImapNo("AUTHORIZATIONFAILED", "Authorization identity not permitted"))
    else:
        d = defer.maybeDeferred(dialogue.login, outcome.credentials)
        _login_result(session, d).chainDeferred(done)
