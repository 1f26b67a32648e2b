"""The SMTP Protocol: one session's state, fed by the pure parser, answering strictly in order.

Three listener kinds share this class (docs/internals.md): "smtp" (inbound MX, local
recipients only unless authenticated), "submission" (587, STARTTLS then AUTH) and
"submissions" (465, TLS from the first byte, RFC 8314).  Every rule the wire must obey lives in
`parser.py`; this module only buffers, dispatches, calls the shared services and writes.
Errors are `SmtpReply` exceptions and become wire replies in `_reply_error` only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from mailsuite import sasl
from mailsuite.accounts.checker import AuthThrottled
from mailsuite.delivery import Envelope, Recipient, RecipientResult, UnknownRecipient
from mailsuite.listener import SessionFactory
from mailsuite.smtp import headers
from mailsuite.smtp.parser import (
    AUTH_LINE_LIMIT,
    LINE_TOO_LONG,
    BodyReader,
    LineBuffer,
    Mailbox,
    MailFrom,
    SmtpReply,
    domain_forms,
    format_reply,
    parse_auth,
    parse_bdat,
    parse_command,
    parse_helo,
    parse_mail_from,
    parse_rcpt_to,
    quote_local,
)
from mailsuite.smtp.received import received_header, with_keyword
from mailsuite.store import QuotaExceeded
from mailsuite.tls import is_secure, tls_info
from mailsuite.trust.inbound import check_inbound

log = Logger(namespace="mailsuite.smtp")

SUBMISSION_KINDS = ("submission", "submissions")

# Commands we know but do not offer get 502 rather than 500 (RFC 5321 §4.2.4).
NOT_IMPLEMENTED = {"EXPN", "ETRN", "TURN", "ATRN", "SEND", "SOML", "SAML", "BURL"}

# While a Deferred is in flight, stop reading once this much pipelined input is buffered.
PAUSE_BUFFER = 256 * 1024


@dataclass
class Transaction:
    """One mail transaction, MAIL to end of DATA/BDAT LAST (RFC 5321 §3.3)."""

    mail: MailFrom
    sender: str  # "" for the null reverse-path
    recipients: list = field(default_factory=list)  # delivery Recipient objects
    addresses: set[str] = field(default_factory=set)
    body: BodyReader | None = None  # BDAT chunks accumulate here across commands
    failed: bool = False  # a BDAT chunk was refused: the rest of the transaction is too
    # Submission: the addresses the user may send as (envelope and From:), looked up at MAIL.
    senders: frozenset[str] = frozenset()


class SmtpSession(protocol.Protocol, TimeoutMixin):
    def __init__(self, services, kind: str) -> None:
        self.services = services
        self.kind = kind
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
        self.bdat_remaining = 0
        self.bdat_last = False
        self.sasl_mech = None
        self.busy = False  # a Deferred is answering the current command
        self.greeted = False
        self.bad_commands = 0
        self.client_ip = ""
        self._holds_slot = False
        self._paused = False
        self._output_blocked = False
        self._clear_auth_ok: bool | None = None
        self._processing = False
        self._bdat_error: SmtpReply | None = None

    # --- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client_ip = getattr(peer, "host", "") or ""
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        self.secure = self.kind == "submissions" or is_secure(self.transport)
        self.transport.registerProducer(self, True)
        if not self.services.connections.acquire(self.client_ip):
            log.info("smtp {ip}: too many connections", ip=self.client_ip)
            self._write(format_reply(421, "4.7.0", f"{self.hostname} Error: too many connections"))
            self._close()
            return
        self._holds_slot = True
        self.setTimeout(self.cfg.command_timeout)
        delay = self.cfg.greeting_delay
        if delay > 0:
            from twisted.internet import reactor

            self._greet_call = reactor.callLater(delay, self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        if self.mode == "closed":
            return
        self.greeted = True
        self._write(f"220 {self.hostname} ESMTP mailsuite\r\n".encode())

    def connectionLost(self, reason: Failure = None) -> None:
        self.setTimeout(None)
        self.mode = "closed"
        call = getattr(self, "_greet_call", None)
        if call is not None and call.active():
            call.cancel()
        if self._holds_slot:
            self._holds_slot = False
            self.services.connections.release(self.client_ip)

    def timeoutConnection(self) -> None:
        # RFC 5321 §4.5.3.2: the server may close after its timeout, with a 421 first.
        log.info("smtp {ip}: timeout in {mode}", ip=self.client_ip, mode=self.mode)
        self._write(format_reply(421, "4.4.2", f"{self.hostname} Error: timeout exceeded"))
        self._close()

    def _close(self) -> None:
        self.mode = "closed"
        self.setTimeout(None)
        self.transport.loseConnection()

    def _write(self, data: bytes) -> None:
        self.transport.writeSequence([data])

    # --- input --------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.mode == "closed":
            return
        self.resetTimeout()
        if not self.greeted:
            # Talking before the greeting is what spam bots do (Postfix postscreen "PREGREET").
            log.info("smtp {ip}: pipelining before greeting", ip=self.client_ip)
            self._write(format_reply(554, "5.5.1", "Error: pipelining before greeting"))
            self._close()
            return
        self.lines.feed(data)
        self._process()

    def _process(self) -> None:
        """Run buffered input until it runs out or a command waits on a Deferred."""
        if self._processing:
            return  # a Deferred fired synchronously inside the loop below: let it carry on
        self._processing = True
        try:
            self._process_loop()
        finally:
            self._processing = False
        self._flow_control()

    def _process_loop(self) -> None:
        while not self.busy and not self._output_blocked and self.mode != "closed":
            try:
                if not self._step():
                    break
            except SmtpReply as e:
                self._reply_error(e)
            except Exception:
                log.failure("smtp {ip}: internal error", ip=self.client_ip)
                self._reply_error(SmtpReply(451, "4.3.0", "Error: internal error", close=True))

    def _flow_control(self) -> None:
        """Stop reading while replies pile up unread, or a Deferred waits, and input piles up.

        A client that pipelines endless NOOPs without reading the replies must not make us
        buffer them all: like Postfix's blocking writes, we stop reading until it catches up.
        """
        # Only buffered input pauses reading: pausing on the transport's own signal alone
        # would stall a TLS handshake that has not finished yet.
        waiting = self._output_blocked or self.busy
        want_pause = waiting and self.lines.pending() > PAUSE_BUFFER
        if want_pause != self._paused and self.mode != "closed":
            self._paused = want_pause
            if want_pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    # IPushProducer for our own replies: the transport calls these when its write buffer
    # fills up and drains.
    def pauseProducing(self) -> None:
        self._output_blocked = True
        self._flow_control()

    def resumeProducing(self) -> None:
        self._output_blocked = False
        self._flow_control()
        if self.mode != "closed":
            self._process()

    def stopProducing(self) -> None:
        self._output_blocked = True

    def _step(self) -> bool:
        """Handle one unit of input; False when more input is needed."""
        if self.mode == "data":
            chunk = self.lines.take_rest()
            if not chunk:
                return False
            rest = self.body.feed(chunk)
            if rest is None:
                return False
            self.lines.feed(rest)
            self.mode = "command"
            self.setTimeout(self.cfg.command_timeout)
            self._end_of_message()
            return True
        if self.mode == "bdat":
            chunk = self.lines.take_rest()
            if not chunk and self.bdat_remaining:
                return False
            take = chunk[: self.bdat_remaining]
            self.lines.feed(chunk[self.bdat_remaining :])
            self.bdat_remaining -= len(take)
            if self.body is not None:
                self.body.feed(take)
            if self.bdat_remaining:
                return False
            self.mode = "command"
            self.setTimeout(self.cfg.command_timeout)
            self._end_of_chunk()
            return True
        line = self.lines.next_line()
        if line is None:
            return False
        if line is LINE_TOO_LONG:
            if self.mode == "auth":
                self.mode = "command"
                self.sasl_mech = None
            raise SmtpReply(500, "5.5.2", "Error: line too long")
        if self.mode == "auth":
            self._auth_response(line)
            return True
        if len(line) + 2 > self.cfg.max_command_line and not line[:5].upper() == b"AUTH ":
            raise SmtpReply(500, "5.5.2", "Error: line too long")
        self._command(line)
        return True

    def _reply_error(self, e: SmtpReply) -> None:
        """The one place a typed error becomes a wire reply (and counts as a bad command)."""
        if self.mode == "closed":
            return
        self._write(e.to_bytes())
        if e.close:
            self._close()
            return
        if e.code >= 500:
            self.bad_commands += 1
            limit = self.services.config.limits.bad_commands
            if limit and self.bad_commands >= limit:
                log.info("smtp {ip}: too many errors", ip=self.client_ip)
                self._write(format_reply(421, "4.7.0", f"{self.hostname} Error: too many errors"))
                self._close()

    def _reply(self, code: int, enhanced: str | None, text: str | list[str]) -> None:
        if self.mode != "closed":
            self._write(format_reply(code, enhanced, text))

    # --- Deferred-answered commands -----------------------------------------------------------

    def _wait(self, d: defer.Deferred) -> None:
        """Hold the input until `d` has produced the reply (RFC 2920 §3: replies in order)."""
        self.busy = True

        def done(result):
            self.busy = False
            if self.mode != "closed":
                self._process()
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
        cmd = parse_command(line)
        handler = getattr(self, f"smtp_{cmd.verb}", None)
        if handler is None:
            if cmd.verb in NOT_IMPLEMENTED:
                raise SmtpReply(502, "5.5.1", f"Error: command {cmd.verb} not implemented")
            raise SmtpReply(500, "5.5.2", "Error: command not recognized")
        handler(cmd.arg)

    def smtp_EHLO(self, arg: str) -> None:
        self.helo = parse_helo(arg)
        self.esmtp = True
        self.tx = None
        lines = [self.hostname, "PIPELINING", f"SIZE {self.cfg.max_message_size}"]
        if self._starttls_available():
            lines.append("STARTTLS")
        if self._auth_allowed() and self.user is None:
            lines.append("AUTH " + " ".join(sasl.MECHANISMS))
        lines += ["ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING", "HELP"]
        # RFC 2034 §4: no enhanced codes in the EHLO reply.
        self._reply(250, None, lines)

    def smtp_HELO(self, arg: str) -> None:
        self.helo = parse_helo(arg)
        self.esmtp = False
        self.tx = None
        self._reply(250, None, self.hostname)

    def smtp_NOOP(self, arg: str) -> None:
        self._reply(250, "2.0.0", "Ok")

    def smtp_RSET(self, arg: str) -> None:
        if arg.strip():
            raise SmtpReply(501, "5.5.4", "Syntax: RSET")
        self.tx = None
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
        self.transport.startTLS(self.services.tls.server_options())
        # RFC 3207 §4.2: forget everything learnt before TLS.
        self.secure = True
        self.helo = None
        self.esmtp = False
        self.tx = None
        self.user = None

    def smtp_AUTH(self, arg: str) -> None:
        if self.helo is None or not self.esmtp:
            raise SmtpReply(503, "5.5.1", "Error: send EHLO first")
        if self.user is not None:
            raise SmtpReply(503, "5.5.1", "Error: already authenticated")
        if self.tx is not None:
            raise SmtpReply(503, "5.5.1", "Error: MAIL transaction in progress")
        if not self._auth_allowed():
            # RFC 4954 §4: no password over a clear connection.
            raise SmtpReply(
                538, "5.7.11", "Encryption required for requested authentication mechanism"
            )
        name, initial = parse_auth(arg)
        try:
            mech = sasl.mechanism(name)
        except sasl.SaslError:
            raise SmtpReply(504, "5.5.4", "Unrecognized authentication type") from None
        decoded = None
        if initial is not None:
            decoded = self._sasl_decode(initial)
        self.sasl_mech = mech
        self._sasl_next(lambda: mech.start(decoded))

    def _auth_response(self, line: bytes) -> None:
        mech = self.sasl_mech
        self.mode = "command"
        response = self._sasl_decode(line)
        self._sasl_next(lambda: mech.step(response))

    def _sasl_decode(self, data: bytes) -> bytes:
        try:
            return sasl.decode_response(data)
        except sasl.SaslCancelled:
            self.sasl_mech = None
            raise SmtpReply(501, "5.0.0", "Authentication aborted") from None
        except sasl.SaslError:
            self.sasl_mech = None
            raise SmtpReply(501, "5.5.2", "Cannot decode response") from None

    def _sasl_next(self, step) -> None:
        try:
            result = step()
        except sasl.SaslError:
            self.sasl_mech = None
            raise SmtpReply(535, "5.7.8", "Error: authentication failed") from None
        if isinstance(result, sasl.Challenge):
            self.mode = "auth"
            # RFC 4954 §4: "334" SP base64 challenge, no enhanced code.
            self._write(b"334 " + sasl.encode_challenge(result.data) + b"\r\n")
            return
        self.sasl_mech = None
        self._login(result)

    def _login(self, creds) -> None:
        if creds.authzid and creds.authzid.lower() != creds.username.lower():
            raise SmtpReply(535, "5.7.8", "Error: authentication failed")
        d = self.services.authenticator.login(
            creds.username, creds.password, self.client_ip, "smtp"
        )

        def ok(address):
            self.user = address
            self._reply(235, "2.7.0", "Authentication successful")

        def failed(failure):
            if failure.check(AuthThrottled):
                raise SmtpReply(454, "4.7.0", "Temporary authentication failure, try again later")
            raise SmtpReply(535, "5.7.8", "Error: authentication failed")

        self._wait(d.addCallbacks(ok, failed))

    def smtp_MAIL(self, arg: str) -> None:
        if self.helo is None:
            raise SmtpReply(503, "5.5.1", "Error: send HELO/EHLO first")
        if self.tx is not None:
            raise SmtpReply(503, "5.5.1", "Error: nested MAIL command")
        if self.kind in SUBMISSION_KINDS and self.user is None:
            # RFC 6409 §4.3 / RFC 4954 §6: submission needs authentication, which needs TLS
            # first (RFC 3207 §4 wording) unless clear-text AUTH is allowed here.
            if not self._auth_allowed():
                raise SmtpReply(530, "5.7.0", "Must issue a STARTTLS command first")
            raise SmtpReply(530, "5.7.0", "Authentication required")
        mail = parse_mail_from(arg)
        if mail.size is not None and mail.size > self.cfg.max_message_size:
            # RFC 1870 §6: refuse a declared size over the limit before any data.
            raise SmtpReply(552, "5.3.4", "Message size exceeds fixed limit")
        sender = mail.sender.address if mail.sender else ""
        senders: frozenset[str] = frozenset()
        if self.user is not None:
            senders = frozenset(
                a.lower() for a in self.services.accounts.sender_addresses(self.user)
            )
            if not sender or sender.lower() not in senders:
                raise SmtpReply(
                    553, "5.7.1", f"Sender address <{sender}> not owned by user {self.user}"
                )
        self.tx = Transaction(mail, sender, senders=senders)
        self._reply(250, "2.1.0", "Ok")

    def smtp_RCPT(self, arg: str) -> None:
        tx = self.tx
        if tx is None:
            raise SmtpReply(503, "5.5.1", "Error: need MAIL command")
        if tx.body is not None:
            raise SmtpReply(503, "5.5.1", "Error: BDAT in progress")
        rcpt = parse_rcpt_to(arg, utf8=tx.mail.smtputf8)
        if len(tx.recipients) >= self.cfg.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 for too many recipients; the client sends the rest later.
            raise SmtpReply(452, "4.5.3", "Error: too many recipients")
        address, resolved = self._check_recipient(rcpt.recipient)
        if tx.mail.size is not None:
            try:
                # RFC 1870 §6: with a declared SIZE, refuse a full mailbox now rather than
                # fail one copy after DATA (a single reply covers all recipients).
                self.services.delivery.check_quota(address, tx.mail.size, resolved)
            except QuotaExceeded as e:
                raise _quota_reply(e, f"<{address}>: Mailbox full") from None
        if address.lower() not in tx.addresses:
            tx.addresses.add(address.lower())
            tx.recipients.append(_make_recipient(address, rcpt.notify, rcpt.orcpt))
        self._reply(250, "2.1.5", "Ok")

    def _check_recipient(self, mbox: Mailbox) -> tuple[str, RecipientResult | None]:
        """The address to deliver to and what it resolved to, or the reply refusing it (no
        open relay)."""
        if not mbox.domain:
            # RFC 5321 §4.1.1.3: <Postmaster> without a domain must be accepted.
            domain = self.services.config.domains[0] if self.services.config.domains else ""
            return f"postmaster@{domain}", None
        relay_ok = self.user is not None
        if not relay_ok and (mbox.has_routing or mbox.is_ip_literal):
            # user%remote@local, remote!user@local, "user@remote"@local, user@[1.2.3.4]:
            # sender-specified routing is refused from strangers (Postfix
            # allow_untrusted_routing=no), so nothing can bounce through us.
            raise SmtpReply(554, "5.7.1", f"<{mbox.address}>: Relay access denied")
        local_part = quote_local(mbox.local) if mbox.quoted else mbox.local
        resolved = None
        for domain in domain_forms(mbox.domain):
            address = f"{local_part}@{domain}"
            resolved = self.services.delivery.resolve(address)
            if resolved.kind != "remote":
                break  # a local domain in this form (known user or not)
        else:
            address = mbox.address  # remote in every form: no local mailbox to check
        kind = resolved.kind if resolved is not None else "remote"
        if kind == "unknown":
            raise SmtpReply(550, "5.1.1", f"<{address}>: Recipient address rejected: User unknown")
        if kind == "local" or relay_ok:
            return address, resolved
        raise SmtpReply(554, "5.7.1", f"<{address}>: Relay access denied")

    def smtp_DATA(self, arg: str) -> None:
        tx = self._ready_for_content()
        if arg.strip():
            raise SmtpReply(501, "5.5.4", "Syntax: DATA")
        if tx.body is not None:
            raise SmtpReply(503, "5.5.1", "Error: BDAT in progress")
        self.body = BodyReader(
            self.cfg.max_message_size, self.cfg.max_text_line, self.cfg.bare_newline
        )
        self.mode = "data"
        self.setTimeout(self.cfg.data_timeout)
        self._reply(354, None, "End data with <CR><LF>.<CR><LF>")

    def _ready_for_content(self) -> Transaction:
        if self.tx is None:
            raise SmtpReply(503, "5.5.1", "Error: need MAIL command")
        if not self.tx.recipients:
            # RFC 2920 §3.1: DATA after every RCPT failed.
            raise SmtpReply(554, "5.5.1", "Error: no valid recipients")
        return self.tx

    def smtp_BDAT(self, arg: str) -> None:
        try:
            size, last = parse_bdat(arg)
        except SmtpReply as e:
            # Without a size we cannot skip the chunk, and running it as commands would be
            # smuggling: close.
            raise SmtpReply(e.code, e.enhanced, e.lines, close=True) from None
        self.bdat_remaining = size
        self.bdat_last = last
        self.mode = "bdat"
        self.setTimeout(self.cfg.data_timeout)
        # RFC 3030 §3: the chunk is read even when the command is refused.
        try:
            tx = self._ready_for_content()
            if tx.failed:
                raise SmtpReply(503, "5.5.1", "Error: transaction failed, send RSET")
        except SmtpReply as e:
            self.body = None
            self._bdat_error = e
            return
        self._bdat_error = None
        if tx.body is None:
            tx.body = BodyReader(
                self.cfg.max_message_size,
                self.cfg.max_text_line,
                self.cfg.bare_newline,
                dot_stuffed=False,
            )
        self.body = tx.body

    def _end_of_chunk(self) -> None:
        err = self._bdat_error
        if err is not None:
            raise err
        body = self.body
        if self.bdat_last:
            body.finish()
            self._end_of_message()
            return
        if body.too_big:
            self.tx.failed = True
            raise SmtpReply(552, "5.3.4", "Error: message file too big")
        self._reply(250, "2.0.0", f"Ok: {body.size} octets received")

    # --- end of message: checks, headers, delivery ---------------------------------------------

    def _end_of_message(self) -> None:
        tx, body = self.tx, self.body
        self.body = None
        self.tx = None
        data = body.result()  # SmtpReply for size / bare newline / long lines
        if self.user is not None:
            data = self._submission_rules(tx, data)
        queue_id = f"{random.getrandbits(48):012X}"  # names log lines; needs no secrecy
        proto = with_keyword(self.esmtp, self.secure, self.user is not None, tx.mail.smtputf8)
        trace = received_header(
            helo=self.helo or "unknown",
            client_ip=self.client_ip,
            hostname=self.hostname,
            protocol=proto,
            queue_id=queue_id,
            tls_info=tls_info(self.transport) if self.secure else None,
            recipient=tx.recipients[0].address if len(tx.recipients) == 1 else None,
        )
        envelope = _make_envelope(tx, self)
        if self.kind == "smtp" and self.user is None:
            # SPF/DKIM/DMARC for mail from other servers, never for submission (issue 7).
            d = check_inbound(self.services, self.client_ip, self.helo or "", tx.sender, data)
            d.addCallback(self._apply_verdict, envelope, trace, data)
        else:
            d = defer.maybeDeferred(self.services.delivery.deliver, envelope, trace + data)

        def delivered(report):
            for rcpt, reason in getattr(report, "failed", ()):
                # One reply covers every recipient: the others got their copy, this one did
                # not (e.g. over quota).  Delivery owns bouncing it; say so in the log.
                log.warn(
                    "smtp {ip}: {id} not delivered to {rcpt}: {reason}",
                    ip=self.client_ip,
                    id=queue_id,
                    rcpt=rcpt,
                    reason=repr(reason),
                )
            log.info(
                "smtp {ip}: {id} from=<{sender}> nrcpt={n} size={size}",
                ip=self.client_ip,
                id=queue_id,
                sender=tx.sender,
                n=len(tx.recipients),
                size=len(data),
            )
            self._reply(250, "2.0.0", f"Ok: queued as {queue_id}")

        def failed(failure):
            raise _delivery_failure_reply(failure)

        self._wait(d.addCallbacks(delivered, failed))

    def _apply_verdict(self, verdict, envelope: Envelope, trace: bytes, data: bytes):
        """Refuse (550/451), or deliver to INBOX or Junk with Authentication-Results on top."""
        if verdict.action in ("reject", "tempfail"):
            raise SmtpReply(verdict.code, verdict.enhanced, verdict.text)
        if verdict.action == "junk":
            envelope.folder = "Junk"
        return self.services.delivery.deliver(envelope, trace + verdict.apply(data))

    def _submission_rules(self, tx: Transaction, data: bytes) -> bytes:
        """RFC 6409 §8: From: must be the account's, Date:/Message-ID: are added if missing."""
        fields = headers.header_index(data)
        found = headers.from_addresses(data, fields)
        if found is None:
            data = b"From: <" + tx.sender.encode("utf-8") + b">\r\n" + data
        elif not found or any(a.lower() not in tx.senders for a in found):
            raise SmtpReply(553, "5.7.1", f"From: header address not owned by user {self.user}")
        return headers.add_missing_headers(data, self.hostname, fields=fields)

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


def _make_recipient(address: str, notify, orcpt) -> Recipient:
    return Recipient(address, tuple(notify) if notify else (), orcpt)


def _make_envelope(tx: Transaction, session: SmtpSession) -> Envelope:
    return Envelope(
        mail_from=tx.sender,
        recipients=list(tx.recipients),
        dsn_ret=tx.mail.ret,
        dsn_envid=tx.mail.envid,
        authenticated_user=session.user,
        client_ip=session.client_ip,
        helo=session.helo or "",
        smtputf8=tx.mail.smtputf8,
    )


def _quota_reply(e: QuotaExceeded, text: str) -> SmtpReply:
    """RFC 3463 X.2.2 mailbox full: 452 while it may drain, 552 when the message can never
    fit (RFC 1870 §6.1 makes the same split for SIZE)."""
    if getattr(e, "temporary", True):
        return SmtpReply(452, "4.2.2", text)
    return SmtpReply(552, "5.2.2", text)


def _delivery_failure_reply(failure: Failure) -> SmtpReply:
    if failure.check(SmtpReply):
        return failure.value
    if failure.check(UnknownRecipient):
        # The account vanished between RCPT and the end of DATA.
        return SmtpReply(550, "5.1.1", "Error: recipient address rejected: User unknown")
    if failure.check(QuotaExceeded):
        return _quota_reply(failure.value, "Error: mailbox full")
    log.failure("delivery failed", failure)
    # Nothing is half-delivered: delivery fires only when every copy is safe, and a retry of
    # the same message after 451 must not duplicate what was stored.
    return SmtpReply(451, "4.3.0", "Error: temporary failure, try again later")


def build_factory(services, kind: str) -> SessionFactory:
    """Factory for the "smtp", "submission" or "submissions" listener (docs/internals.md)."""
    if kind not in ("smtp", "submission", "submissions"):
        raise ValueError(f"not an SMTP listener kind: {kind}")
    return SessionFactory(SmtpSession, services, kind)
