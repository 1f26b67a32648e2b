"""The POP3 session as a state machine (RFC 1939 §3): lines in, replies out, no socket in sight.

AUTHORIZATION → TRANSACTION → UPDATE.  The session frames lines, hands them to
`pop3/parser.py`, runs one command at a time against the store and the authenticator, and
writes whole replies.  What it needs from the connection (writes, closing, STLS, streaming a
big body, whether TLS is on) it asks of a `Pop3Connection`: `server.py` is the Twisted one, a
test can be another.  A command that answers through a Deferred (a login, a streamed body)
holds the input until it has.
"""

from __future__ import annotations

import itertools
from typing import BinaryIO, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.line_session import LineSession
from mailsuite.logtext import visible
from mailsuite.pop3.authorization import (
    AUTHORIZATION,
    TRANSACTION,
    AuthorizationCommands,
)
from mailsuite.pop3.maildrop import Maildrop
from mailsuite.pop3.parser import (
    SYS_TEMP,
    LineSplitter,
    LineTooLong,
    Pop3Error,
    WireEncoder,
    err,
    ok,
    parse_command,
)
from mailsuite.pop3.streamer import StreamAborted
from mailsuite.pop3.transaction import TransactionCommands

log = Logger(namespace="mailsuite.pop3")

_session_ids = itertools.count(1)


class Pop3Connection(Protocol):
    """What the session asks of its connection."""

    def write(self, parts: list[bytes]) -> None:
        """Send whole replies."""

    def close(self) -> None:
        """Close once the replies written so far are sent."""

    def is_secure(self) -> bool:
        """TLS is on (pop3s, or after STLS)."""

    def start_tls(self) -> None:
        """Begin the TLS handshake (after `+OK Begin TLS negotiation now.`)."""

    def stream(self, fileobj: BinaryIO, encoder: WireEncoder) -> defer.Deferred:
        """Send the rest of a message from `fileobj`, closing it; fires once `.CRLF` is out,
        errbacks with StreamAborted when the connection goes first."""

    def processed(self) -> None:
        """The session ran out of input, waits on a Deferred or on the client to read its
        replies (`output_blocked`), or yielded its turn (`yielded`): time for flow control."""


class _Disconnected:
    """The `Pop3Connection` of a session whose connection is gone: holds nothing, so the
    session and its maildrop are freed at once rather than by the cycle collector."""

    def write(self, parts: list[bytes]) -> None:
        pass

    def close(self) -> None:
        pass

    def is_secure(self) -> bool:
        return False

    def start_tls(self) -> None:
        pass

    def stream(self, fileobj: BinaryIO, encoder: WireEncoder) -> defer.Deferred:
        fileobj.close()
        return defer.fail(StreamAborted())

    def processed(self) -> None:
        pass


DISCONNECTED = _Disconnected()


class Pop3Session(AuthorizationCommands, TransactionCommands, LineSession):
    """One POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3)."""

    name = "pop3"
    login_state = AUTHORIZATION
    disconnected = DISCONNECTED

    def __init__(self, services, kind: str, conn: Pop3Connection):
        self.log = log  # an instance attribute: a Logger on the class binds to the session
        self.services = services
        self.config = services.config
        self.kind = kind
        self.conn = conn
        self.server_state = services.pop3
        self.state = AUTHORIZATION
        self.settings = services.config.pop3
        self.reader = LineSplitter(self.settings.max_command_line)
        self.session_id = next(_session_ids)
        self.client_ip = ""
        self.user: str | None = None  # from USER, waiting for PASS
        self.address: str | None = None  # logged-in mailbox
        self.mailbox = None
        self.folder = None
        self.maildrop: Maildrop | None = None
        # RFC 6856: our replies are ASCII and messages go out as stored, so UTF8 mode only
        # needs remembering (USER/PASS are decoded as UTF-8 in any case).
        self.utf8 = False
        self.bad_commands = 0
        self.sasl: sasl.SaslDialogue | None = None
        self.last_retr = 0  # message number of the last RETR
        self.ahead: tuple[int, bytes] | None = None  # read-ahead: (UID, wire form) of the next

    # -- events from the connection (the rest: LineSession) ------------------------------

    def goodbye(self, text: str, temporary: bool = False) -> bytes:
        # RFC 3206: [SYS/TEMP], a condition to try again later.
        return err(text, SYS_TEMP if temporary else None)

    def greet(self) -> None:
        log.info(
            "pop3 #{sid} connect from {ip} on {kind}",
            sid=self.session_id,
            ip=self.client_ip,
            kind=self.kind,
        )
        self.conn.write([ok("mailsuite ready.")])

    def _let_go(self) -> None:
        if self.address is not None:
            # RFC 1939 §6: a dropped connection never reaches UPDATE, so nothing marked with
            # DELE is removed; the maildrop is free for the next session.
            self.server_state.release(self.address, self)
        self.maildrop = None
        self.ahead = None
        super()._let_go()

    # -- input ------------------------------------------------------------------------------

    def next_input(self):
        return self.reader.next_line()

    def run_input(self, unit) -> None:
        self._run_line(unit)

    def _run_line(self, line: bytes | LineTooLong) -> None:
        try:
            if isinstance(line, LineTooLong):
                if self.sasl is not None:
                    self.sasl.abort()
                self.sasl = None
                if line.endless:
                    log.info("pop3 #{sid} command line without end, closing", sid=self.session_id)
                    self._write([err("Command line too long, closing.")])
                    self._close()
                    return
                raise Pop3Error("Command line too long.", bad=True)
            if self.sasl is not None:
                result = self._sasl_step(line)
            else:
                result = self._dispatch(parse_command(line))
        except Pop3Error as e:
            self._error(e)
            return
        except Exception:
            log.failure("pop3 #{sid} command failed", sid=self.session_id)
            self._write([err("Internal error, try again later.", SYS_TEMP)])
            return
        if isinstance(result, defer.Deferred):
            self.busy = True
            result.addErrback(self._deferred_error)
            result.addBoth(self._command_done)

    def _deferred_error(self, failure) -> None:
        if failure.check(Pop3Error):
            self._error(failure.value)
        elif failure.check(StreamAborted):
            pass
        else:
            log.failure("pop3 #{sid} command failed", failure, sid=self.session_id)
            self._write([err("Internal error, try again later.", SYS_TEMP)])

    def _command_done(self, _=None) -> None:
        self.busy = False
        if not self.lost:
            self.pump()

    def _error(self, e: Pop3Error) -> None:
        self._write([e.reply()])
        if e.bad:
            # The reason only, never the line: it may hold a password.
            log.info("pop3 #{sid} bad command: {why}", sid=self.session_id, why=visible(e.text))
            self.bad_commands += 1
            if self.bad_commands >= self.config.limits.bad_commands:
                log.info("pop3 #{sid} too many bad commands", sid=self.session_id)
                self._write([err("Too many bad commands, closing.")])
                self._close()

    def _write(self, parts: list[bytes]) -> None:
        if not self.lost:
            self.conn.write(parts)

    def _dispatch(self, cmd):
        handler = _COMMANDS.get(cmd.name)
        if handler is None or self.state not in handler[1]:
            if cmd.name == "APOP":
                # Passwords are stored hashed, so the APOP digest cannot be checked.
                raise Pop3Error("APOP is not supported.", bad=True)
            raise Pop3Error("Unknown command.", bad=True)
        return handler[0](self, cmd.args)


_AUTH = (AUTHORIZATION,)
_TRANS = (TRANSACTION,)
# Every command, the handler that answers it and the states it is allowed in (RFC 1939 §3).
_COMMANDS = {
    "CAPA": (Pop3Session._capa, (AUTHORIZATION, TRANSACTION)),
    "STLS": (Pop3Session._stls, _AUTH),
    "UTF8": (Pop3Session._utf8, _AUTH),
    "USER": (Pop3Session._user, _AUTH),
    "PASS": (Pop3Session._pass, _AUTH),
    "AUTH": (Pop3Session._auth, _AUTH),
    "QUIT": (Pop3Session._quit, (AUTHORIZATION, TRANSACTION)),
    "STAT": (Pop3Session._stat, _TRANS),
    "LIST": (Pop3Session._list, _TRANS),
    "UIDL": (Pop3Session._uidl, _TRANS),
    "RETR": (Pop3Session._retr, _TRANS),
    "TOP": (Pop3Session._top, _TRANS),
    "DELE": (Pop3Session._dele, _TRANS),
    "RSET": (Pop3Session._rset, _TRANS),
    "NOOP": (Pop3Session._noop, _TRANS),
}
