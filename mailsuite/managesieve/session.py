"""The ManageSieve session as a state machine (RFC 5804): bytes in, responses out, no socket.

Non-authenticated → authenticated (and back, with UNAUTHENTICATE).  The session frames
commands with `parser.CommandReader`, looks each up in `COMMANDS` (handler and the states it
is allowed in), runs one at a time and writes whole responses.  A command that answers through
a Deferred (a login, any work on the user's scripts, which goes through the durable-I/O
service) holds the input until it has.  What it needs of the connection it asks of a
`SieveConnection`: `server.py` is the Twisted one, a test can be another.
"""

from __future__ import annotations

import itertools
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.line_session import LineSession
from mailsuite.logtext import visible
from mailsuite.managesieve import response as R
from mailsuite.managesieve.auth import AUTHENTICATED, NONAUTH, AuthCommands
from mailsuite.managesieve.parser import CommandReader, Line, LiteralTooLarge, Malformed
from mailsuite.managesieve.response import SieveNo
from mailsuite.managesieve.script_commands import ScriptCommands

log = Logger(namespace="mailsuite.managesieve")

_session_ids = itertools.count(1)


class SieveConnection(Protocol):
    """What the session asks of its connection."""

    def write(self, parts: list[bytes]) -> None:
        """Send whole responses."""

    def close(self) -> None:
        """Close once the responses written so far are sent."""

    def is_secure(self) -> bool:
        """TLS is on (after STARTTLS)."""

    def start_tls(self) -> None:
        """Begin the TLS handshake (after the OK to STARTTLS); later writes go out under TLS."""

    def processed(self) -> None:
        """The session ran out of input, waits on a Deferred or on the client to read its
        responses (`output_blocked`), or yielded its turn (`yielded`): time for flow control."""

    def logged_out(self) -> None:
        """UNAUTHENTICATE: the session is a stranger again, with a new login deadline."""


class _Disconnected:
    """The `SieveConnection` of a session whose connection is gone: holds nothing, so the
    session is freed at once rather than by the cycle collector."""

    def write(self, parts: list[bytes]) -> None:
        pass

    def close(self) -> None:
        pass

    def is_secure(self) -> bool:
        return False

    def start_tls(self) -> None:
        pass

    def processed(self) -> None:
        pass

    def logged_out(self) -> None:
        pass


DISCONNECTED = _Disconnected()


class ManageSieveSession(AuthCommands, ScriptCommands, LineSession):
    """One ManageSieve session."""

    name = "managesieve"
    login_state = NONAUTH
    disconnected = DISCONNECTED

    def __init__(self, services, kind: str, conn: SieveConnection):
        self.log = log  # an instance attribute: a Logger on the class binds to the session
        self.services = services
        self.config = services.config
        self.settings = services.config.managesieve
        self.kind = kind
        self.conn = conn
        self.state = NONAUTH
        self.reader = CommandReader(
            self.settings.max_command_line, self.settings.max_literal_before_auth
        )
        self.session_id = next(_session_ids)
        self.client_ip = ""
        self.address: str | None = None  # the logged-in user
        self.scripts = None  # the user's ScriptStore once logged in
        self.sasl: sasl.SaslDialogue | None = None
        self.sasl_mechanism = ""  # of the AUTHENTICATE in progress
        self.bad_commands = 0

    # -- events from the connection (the rest: LineSession) ------------------------------

    def goodbye(self, text: str, temporary: bool = False) -> bytes:
        # RFC 5804 §1.3: TRYLATER, a temporary condition.
        return R.bye(text, R.TRYLATER if temporary else None)

    def greet(self) -> None:
        log.info("managesieve #{sid} connect from {ip}", sid=self.session_id, ip=self.client_ip)
        # RFC 5804 §1.7: the greeting is the capability response.
        self._write(self.capability_response("mailsuite ManageSieve ready."))

    def _let_go(self) -> None:
        self.scripts = None
        super()._let_go()

    # -- input ------------------------------------------------------------------------------

    def next_input(self):
        return self.reader.next()

    def run_input(self, unit) -> None:
        self._run(unit)

    def _run(self, frame) -> None:
        try:
            result = self._dispatch(frame)
        except SieveNo as e:
            self._error(e)
            return
        except Exception:
            log.failure("managesieve #{sid} command failed", sid=self.session_id)
            self._write([R.no("Internal error, try again later.", R.TRYLATER)])
            return
        if isinstance(result, defer.Deferred):
            self.busy = True
            result.addErrback(self._deferred_error)
            result.addBoth(self._command_done)

    def _dispatch(self, frame):
        if isinstance(frame, Malformed) and frame.endless:
            log.info("managesieve #{sid} command line without end, closing", sid=self.session_id)
            if self.sasl is not None:
                self.sasl.abort()
                self.sasl = None
            self._write([R.bye(frame.reason)])
            self._close()
            return None
        if isinstance(frame, LiteralTooLarge):
            return self._literal_too_large(frame)
        if self.sasl is not None:
            dialogue, self.sasl = self.sasl, None
            if isinstance(frame, Malformed):
                dialogue.abort()
                raise SieveNo("Invalid SASL response.", bad=True)
            return self._sasl_response(dialogue, frame)
        if isinstance(frame, Malformed):
            raise SieveNo(frame.reason, bad=True)
        return self._command(frame)

    def _command(self, line: Line):
        spec = COMMANDS.get(line.name)
        if spec is None:
            raise SieveNo("Unknown command.", bad=True)
        handler, states = spec
        if self.state not in states:
            if self.state == NONAUTH:
                raise SieveNo("Authenticate first.", bad=True)
            raise SieveNo("Already authenticated.", bad=True)
        return handler(self, line.args)

    def _literal_too_large(self, frame: LiteralTooLarge):
        if self.state == NONAUTH:
            # Before login the octets of a big literal are not read at all: the client has
            # no business sending them, and ManageSieve cannot refuse a literal in advance.
            log.info(
                "managesieve #{sid} literal of {n} octets before login",
                sid=self.session_id,
                n=frame.size,
            )
            self._write([R.bye("Literal too large before authentication.")])
            self._close()
            return None
        if frame.name in ("PUTSCRIPT", "CHECKSCRIPT"):
            # RFC 5804 §2.6: a script over the size limit is refused with QUOTA/MAXSIZE.
            raise SieveNo(f"Script larger than {frame.cap} octets.", R.QUOTA_MAXSIZE)
        raise SieveNo("Argument too long.", bad=True)

    def _deferred_error(self, failure) -> None:
        if failure.check(SieveNo):
            self._error(failure.value)
        else:
            log.failure("managesieve #{sid} command failed", failure, sid=self.session_id)
            self._write([R.no("Internal error, try again later.", R.TRYLATER)])

    def _command_done(self, _=None) -> None:
        self.busy = False
        if not self.lost:
            self.pump()

    def _error(self, e: SieveNo) -> None:
        self._write([e.reply()])
        if e.bad:
            # The reason only, never the line: it may hold a password.
            log.info(
                "managesieve #{sid} bad command: {why}", sid=self.session_id, why=visible(e.text)
            )
            self.bad_commands += 1
            if self.bad_commands >= self.config.limits.bad_commands:
                log.info("managesieve #{sid} too many bad commands", sid=self.session_id)
                self._write([R.bye("Too many bad commands, closing.")])
                self._close()

    def _write(self, parts: list[bytes]) -> None:
        if not self.lost:
            self.conn.write(parts)

    # -- commands in any state --------------------------------------------------------------

    def _capability(self, args):
        self._no_args(args, "CAPABILITY")
        self._write(self.capability_response("Capability completed."))

    def _noop(self, args):
        if len(args) > 1:
            raise SieveNo("NOOP takes at most a tag.", bad=True)
        if args:
            # RFC 5804 §2.13: the tag comes back in the TAG response code.
            tag = args[0]
            if not isinstance(tag, bytes):
                raise SieveNo("The tag must be a string.", bad=True)
            self._write([R.tagged_ok(tag, "Done")])
        else:
            self._write([R.ok("Done")])

    def _logout(self, args):
        self._no_args(args, "LOGOUT")
        # RFC 5804 §2.3: OK, then the server closes the connection.
        self._write([R.ok("Logout completed.")])
        self._close()

    @staticmethod
    def _no_args(args, name: str) -> None:
        if args:
            raise SieveNo(f"{name} takes no arguments.", bad=True)


_ANY = (NONAUTH, AUTHENTICATED)
_NONAUTH = (NONAUTH,)
_AUTH = (AUTHENTICATED,)
# Every command, the handler that answers it and the states it is allowed in (RFC 5804 §2).
COMMANDS = {
    "CAPABILITY": (ManageSieveSession._capability, _ANY),
    "NOOP": (ManageSieveSession._noop, _ANY),
    "LOGOUT": (ManageSieveSession._logout, _ANY),
    "STARTTLS": (AuthCommands._starttls, _NONAUTH),
    "AUTHENTICATE": (AuthCommands._authenticate, _NONAUTH),
    "UNAUTHENTICATE": (AuthCommands._unauthenticate, _AUTH),
    "HAVESPACE": (ScriptCommands._havespace, _AUTH),
    "PUTSCRIPT": (ScriptCommands._putscript, _AUTH),
    "CHECKSCRIPT": (ScriptCommands._checkscript, _AUTH),
    "LISTSCRIPTS": (ScriptCommands._listscripts, _AUTH),
    "SETACTIVE": (ScriptCommands._setactive, _AUTH),
    "GETSCRIPT": (ScriptCommands._getscript, _AUTH),
    "DELETESCRIPT": (ScriptCommands._deletescript, _AUTH),
    "RENAMESCRIPT": (ScriptCommands._renamescript, _AUTH),
}
