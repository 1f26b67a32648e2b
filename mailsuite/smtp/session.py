"""The SMTP session as a state machine: bytes in, replies out, no socket in sight.

Three listener kinds share it: "smtp" (inbound MX, local recipients only unless
authenticated), "submission" (587, STARTTLS then AUTH) and "submissions" (465, TLS from the
first byte, RFC 8314).  Every rule the wire must obey lives in `parser.py`; the session keeps
the state between commands, answers strictly in order and calls the shared services.  What it
needs from the connection (writes, closing, STARTTLS, timeouts) it asks of an `SmtpConnection`:
`server.py` is the Twisted one, a test can be another.  Work that returns a Deferred
(authentication, delivery) holds the input until its reply is written (`_wait`).
Errors are `SmtpReply` exceptions and become wire replies in `_reply_error` only.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.limits import COMMANDS_PER_TURN, PER_ADDRESS
from mailsuite.smtp.auth import AuthCommands
from mailsuite.smtp.budget import BodyCharge
from mailsuite.smtp.burl import BurlCommands
from mailsuite.smtp.parser import (
    AUTH_LINE_LIMIT,
    LINE_RUNAWAY,
    LINE_TOO_LONG,
    BodyReader,
    LineBuffer,
    SmtpReply,
    format_reply,
    parse_helo,
    split_command,
)
from mailsuite.smtp.transaction import Transaction, TransactionCommands

log = Logger(namespace="mailsuite.smtp")

# Commands we know but do not offer get 502 rather than 500 (RFC 5321 §4.2.4).
NOT_IMPLEMENTED = {"EXPN", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML"}


# EHLO replies made so far, by what decides them (SmtpSession.smtp_EHLO).
_EHLO_REPLIES: dict[tuple, bytes] = {}


class SmtpConnection(Protocol):
    """What the session asks of its connection."""

    def write(self, data: bytes) -> None:
        """Send one whole reply (or several)."""

    def close(self) -> None:
        """Close once the replies written so far are sent."""

    def start_tls(self) -> None:
        """Begin the TLS handshake (after `220 Ready to start TLS`)."""

    def set_timeout(self, seconds: float | None) -> None:
        """The idle timeout from now on (command or DATA timeout); None: none."""

    def tls_info(self) -> str | None:
        """Protocol and cipher for the Received header, when the connection is TLS."""

    def processed(self) -> None:
        """The session ran out of input, waits on a Deferred or on the client to read its
        replies, or yielded its turn (`yielded`): time to look at flow control."""


class _Disconnected:
    """The `SmtpConnection` of a session whose connection is gone: holds nothing, so the
    session and its buffers are freed at once rather than by the cycle collector."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass

    def start_tls(self) -> None:
        pass

    def set_timeout(self, seconds: float | None) -> None:
        pass

    def tls_info(self) -> str | None:
        return None

    def processed(self) -> None:
        pass


DISCONNECTED = _Disconnected()


class SmtpSession(AuthCommands, TransactionCommands, BurlCommands):
    """One SMTP session: greeting, commands, DATA/BDAT content, replies in order."""

    def __init__(self, services, kind: str, conn: SmtpConnection) -> None:
        self.services = services
        self.kind = kind
        self.conn = conn
        self.cfg = services.config.smtp
        self.hostname = services.config.hostname
        # RFC 4954 §4: AUTH lines may be up to 12288 octets; other commands are cut at
        # max_command_line after framing (RFC 5321 §4.5.3.1.4).
        self.lines = LineBuffer(max(AUTH_LINE_LIMIT, self.cfg.max_command_line))
        self.mode = "command"  # "command" | "data" | "bdat" | "auth" | "closed"
        self.helo: str | None = None
        self.esmtp = False
        self.secure = False
        self.user: str | None = None
        self.tx: Transaction | None = None
        self.body: BodyReader | None = None
        self.body_charge: BodyCharge | None = None  # what `body` holds, in the server's budget
        self.bdat_remaining = 0
        self.bdat_last = False
        self.sasl: sasl.SaslDialogue | None = None
        self.busy = False  # a Deferred is answering the current command
        self.output_blocked = False  # the connection asked us to stop producing replies
        self.yielded = False  # process stopped at COMMANDS_PER_TURN with input left
        self.greeted = False
        self.bad_commands = 0
        self.messages_accepted = 0
        self.client_ip = ""
        self._clear_auth_ok: bool | None = None
        self._processing = False
        self._bdat_error: SmtpReply | None = None
        self.junk_screen = None  # junk.screen.ClientScreen for inbound connections

    # --- events from the connection -----------------------------------------------------------

    def connected(self, client_ip: str, secure: bool) -> None:
        self.client_ip = client_ip
        self.secure = secure
        if self.kind == "smtp":
            # DNS list lookups start now and are ready by RCPT (junk/screen.py).
            self.junk_screen = self.services.junk.screen(client_ip)

    def refuse_connection(self, limit: str) -> None:
        """A connection limit is reached (`limit`: mailsuite.limits.PER_ADDRESS or
        SERVER_WIDE): say which instead of greeting."""
        if limit == PER_ADDRESS:
            log.info("smtp {ip}: too many connections from this address", ip=self.client_ip)
            text = "too many connections from your address"
        else:
            log.info("smtp {ip}: too many connections to this server", ip=self.client_ip)
            text = "too many connections to this server, try again later"
        self.conn.write(format_reply(421, "4.7.0", f"{self.hostname} Error: {text}"))
        self._close()

    def evicted(self) -> None:
        """Every slot is taken and this session was the quietest one not logged in."""
        self.conn.write(
            format_reply(421, "4.7.0", f"{self.hostname} Error: server busy, closing idle session")
        )
        self._close()

    def deadline_passed(self) -> None:
        """`session_deadline` passed without a login or an accepted message."""
        log.info("smtp {ip}: session deadline passed in {mode}", ip=self.client_ip, mode=self.mode)
        self.conn.write(
            format_reply(421, "4.4.2", f"{self.hostname} Error: session time limit exceeded")
        )
        self._close()

    def greet(self) -> None:
        if self.mode == "closed":
            return
        self.greeted = True
        self.conn.write(f"220 {self.hostname} ESMTP mailsuite\r\n".encode())

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.mode == "closed":
            return
        if not self.greeted:
            # Talking before the greeting is what spam bots do (Postfix postscreen "PREGREET").
            log.info("smtp {ip}: pipelining before greeting", ip=self.client_ip)
            self.conn.write(format_reply(554, "5.5.1", "Error: pipelining before greeting"))
            self._close()
            return
        self.lines.feed(data)
        self.process()

    def timed_out(self) -> None:
        # RFC 5321 §4.5.3.2: the server may close after its timeout, with a 421 first.
        log.info("smtp {ip}: timeout in {mode}", ip=self.client_ip, mode=self.mode)
        self.conn.write(format_reply(421, "4.4.2", f"{self.hostname} Error: timeout exceeded"))
        self._close()

    def connection_lost(self) -> None:
        self.mode = "closed"
        if self.sasl is not None:
            self.sasl.abort()
        self.sasl = None
        # Nothing of this session waits for the cycle collector once the connection is gone.
        self.lines.take_rest()
        self._forget_transaction()
        self.conn = DISCONNECTED

    def _forget_transaction(self) -> None:
        """EHLO, HELO, RSET, STARTTLS, connection loss: the transaction and its content are
        gone, and so is their charge to the message memory."""
        self.tx = None
        self.body = None
        self._release_body()

    def _close(self) -> None:
        self.mode = "closed"
        self.conn.close()

    # --- input --------------------------------------------------------------------------------

    def process(self) -> None:
        """Run buffered input until it runs out or a command waits on a Deferred."""
        if self._processing:
            return  # a Deferred fired synchronously inside the loop below: let it carry on
        self._processing = True
        try:
            self._process_loop()
        finally:
            self._processing = False
        self.conn.processed()

    def _process_loop(self) -> None:
        self.yielded = False
        steps = 0
        while not self.busy and not self.output_blocked and self.mode != "closed":
            if steps >= COMMANDS_PER_TURN:
                self.yielded = True
                return
            steps += 1
            try:
                if not self._step():
                    break
            except SmtpReply as e:
                self._reply_error(e)
            except Exception:
                log.failure("smtp {ip}: internal error", ip=self.client_ip)
                self._reply_error(SmtpReply(451, "4.3.0", "Error: internal error", close=True))

    def _step(self) -> bool:
        """Handle one unit of input; False when more input is needed."""
        if self.mode == "data":
            return self._step_data()
        if self.mode == "bdat":
            return self._step_bdat()
        line = self.lines.next_line()
        if line is None:
            return False
        if line is LINE_RUNAWAY:
            log.info("smtp {ip}: command line without end, closing", ip=self.client_ip)
            self.conn.write(format_reply(421, "4.7.0", f"{self.hostname} Error: line too long"))
            self._close()
            return False
        if line is LINE_TOO_LONG:
            if self.mode == "auth":
                self.mode = "command"
                self.sasl.abort()
                self.sasl = None
            raise SmtpReply(500, "5.5.2", "Error: line too long")
        if self.mode == "auth":
            self._auth_response(line)
            return True
        if len(line) + 2 > self.cfg.max_command_line and not line[:5].upper() == b"AUTH ":
            raise SmtpReply(500, "5.5.2", "Error: line too long")
        self._command(line)
        return True

    def _step_data(self) -> bool:
        chunk = self.lines.take_rest()
        if not chunk:
            return False
        rest = self.body.feed(chunk)
        self.hold_body()
        if rest is None:
            return False
        self.lines.feed(rest)
        self.mode = "command"
        self.conn.set_timeout(self.cfg.command_timeout)
        self._end_of_message()
        return True

    def _step_bdat(self) -> bool:
        chunk = self.lines.take_rest()
        if not chunk and self.bdat_remaining:
            return False
        take = chunk[: self.bdat_remaining]
        self.lines.feed(chunk[self.bdat_remaining :])
        self.bdat_remaining -= len(take)
        if self.body is not None:
            self.body.feed(take)
            self.hold_body()
        if self.bdat_remaining:
            return False
        self.mode = "command"
        self.conn.set_timeout(self.cfg.command_timeout)
        self._end_of_chunk()
        return True

    def _reply_error(self, e: SmtpReply) -> None:
        """The one place a typed error becomes a wire reply (and counts as a bad command)."""
        if self.mode == "closed":
            return
        self.conn.write(e.to_bytes())
        if e.close:
            self._close()
            return
        if e.code >= 500:
            self.bad_commands += 1
            limit = self.services.config.limits.bad_commands
            if limit and self.bad_commands >= limit:
                log.info("smtp {ip}: too many errors", ip=self.client_ip)
                self.conn.write(
                    format_reply(421, "4.7.0", f"{self.hostname} Error: too many errors")
                )
                self._close()

    def _reply(self, code: int, enhanced: str | None, text: str | list[str]) -> None:
        if self.mode != "closed":
            self.conn.write(format_reply(code, enhanced, text))

    def _wait(self, d: defer.Deferred) -> None:
        """Hold the input until `d` has produced the reply (RFC 2920 §3: replies in order)."""
        self.busy = True

        def done(result):
            self.busy = False
            if self.mode != "closed":
                self.process()
            return result

        def failed(failure):
            if failure.check(SmtpReply):
                self._reply_error(failure.value)
            else:
                log.failure("smtp {ip}: internal error", failure, ip=self.client_ip)
                self._reply_error(SmtpReply(451, "4.3.0", "Error: internal error", close=True))

        d.addErrback(failed)
        d.addBoth(done)

    # --- commands -----------------------------------------------------------------------------

    def _command(self, line: bytes) -> None:
        verb, arg = split_command(line)
        handler = getattr(self, f"smtp_{verb}", None)
        if handler is None:
            if verb in NOT_IMPLEMENTED:
                raise SmtpReply(502, "5.5.1", f"Error: command {verb} not implemented")
            raise SmtpReply(500, "5.5.2", "Error: command not recognized")
        handler(arg)

    def smtp_EHLO(self, arg: str) -> None:
        self.helo = parse_helo(arg)
        self.esmtp = True
        self._forget_transaction()
        starttls = self._starttls_available()
        auth = self._auth_allowed() and self.user is None
        burl = tuple(self.ehlo_burl())
        # The same few replies over and over: each made once (per server name and size).
        key = (self.hostname, self.cfg.max_message_size, starttls, auth, burl)
        reply = _EHLO_REPLIES.get(key)
        if reply is None:
            lines = [self.hostname, "PIPELINING", f"SIZE {self.cfg.max_message_size}"]
            if starttls:
                lines.append("STARTTLS")
            if auth:
                lines.append("AUTH " + " ".join(sasl.MECHANISMS))
            lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING", "HELP"]
            lines += burl
            # RFC 2034 §4: no enhanced codes in the EHLO reply.
            reply = format_reply(250, None, lines)
            if len(_EHLO_REPLIES) < 64:
                _EHLO_REPLIES[key] = reply
        if self.mode != "closed":
            self.conn.write(reply)

    def smtp_HELO(self, arg: str) -> None:
        self.helo = parse_helo(arg)
        self.esmtp = False
        self._forget_transaction()
        self._reply(250, None, self.hostname)

    def smtp_NOOP(self, arg: str) -> None:
        self._reply(250, "2.0.0", "Ok")

    def smtp_RSET(self, arg: str) -> None:
        if arg.strip():
            raise SmtpReply(501, "5.5.4", "Syntax: RSET")
        self._forget_transaction()
        self._reply(250, "2.0.0", "Ok")

    def smtp_VRFY(self, arg: str) -> None:
        # RFC 5321 §3.5.3: 252 when we will not say; address harvesting gets nothing.
        self._reply(252, "2.0.0", "Send some mail, I'll try my best")

    def smtp_HELP(self, arg: str) -> None:
        self._reply(
            214,
            "2.0.0",
            [
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                "See RFC 5321",
            ],
        )

    def smtp_QUIT(self, arg: str) -> None:
        self._reply(221, "2.0.0", "Bye")
        self._close()

    def smtp_STARTTLS(self, arg: str) -> None:
        if arg.strip():
            raise SmtpReply(501, "5.5.4", "Syntax: STARTTLS")
        if self.secure:
            raise SmtpReply(503, "5.5.1", "Error: TLS already active")
        if not self._starttls_available():
            raise SmtpReply(454, "4.7.0", "TLS not available")
        self._reply(220, "2.0.0", "Ready to start TLS")
        # RFC 3207 §4.2 / RFC 2920: whatever the client pipelined after STARTTLS was sent in
        # the clear and is dropped, never executed (the CVE-2011-0411 command injection).
        dropped = self.lines.take_rest()
        if dropped:
            log.info(
                "smtp {ip}: dropped {n} bytes pipelined after STARTTLS",
                ip=self.client_ip,
                n=len(dropped),
            )
        self.conn.start_tls()
        self.services.metrics.tls_started(self.kind)
        # RFC 3207 §4.2: forget everything learnt before TLS.
        self.secure = True
        self.helo = None
        self.esmtp = False
        self._forget_transaction()
        self.user = None

    # --- policy ------------------------------------------------------------------------------

    def _starttls_available(self) -> bool:
        return not self.secure and getattr(self.services, "tls", None) is not None

    def _auth_allowed(self) -> bool:
        # RFC 4954 §4 / RFC 8314: passwords only inside TLS (loopback exception configurable).
        if self.secure:
            return True
        if self._clear_auth_ok is None:
            self._clear_auth_ok = self.services.plaintext_auth_allowed(False, self.client_ip)
        return self._clear_auth_ok
