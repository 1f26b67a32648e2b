"""SMTP mail transactions (RFC 5321 §3.3): MAIL, RCPT, DATA and BDAT, the end-of-message
checks and the hand-over to delivery.

A mixin of `SmtpSession`: it uses the session's state (`helo`, `user`, `tx`, `body`, `mode`,
`body_charge`) and its `conn`, `_reply` and `_wait`.  What a body holds in memory is charged
to the server's `BodyBudget` (`budget.py`) as it arrives and given back when the transaction
ends, however it ends.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsuite.delivery import (
    Envelope,
    MessageRejected,
    Recipient,
    RecipientResult,
    UnknownRecipient,
)
from mailsuite.junk.filter import JunkRefused
from mailsuite.junk.screen import Refusal
from mailsuite.junk.screen import after_data as screen_after_data
from mailsuite.logtext import visible
from mailsuite.message.headers import field_count
from mailsuite.message.lines import header_end
from mailsuite.smtp import headers
from mailsuite.smtp.budget import BodyCharge
from mailsuite.smtp.parser import (
    BodyReader,
    Mailbox,
    MailFrom,
    SmtpReply,
    domain_forms,
    parse_bdat,
    parse_mail_from,
    parse_rcpt_to,
    quote_local,
)
from mailsuite.smtp.received import received_header, with_keyword
from mailsuite.store import QuotaExceeded
from mailsuite.trust.inbound import check_inbound

log = Logger(namespace="mailsuite.smtp")

SUBMISSION_KINDS = ("submission", "submissions")


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


class TransactionCommands:
    """The commands of a mail transaction, for `SmtpSession`."""

    def smtp_MAIL(self, arg: str) -> None:
        try:
            self._mail(arg)
        except SmtpReply as e:
            self._log_refusal("MAIL", e, sender=_path_of(arg))
            raise

    def _mail(self, arg: str) -> None:
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
        if mail.size and not self.services.message_memory.has_room(self._memory_key(), mail.size):
            # RFC 1870 §6.1: no room for the declared size now; the client may try later.
            raise self._memory_full(f"at MAIL for SIZE={mail.size}")
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
        try:
            self._rcpt(arg)
        except SmtpReply as e:
            sender = self.tx.sender if self.tx is not None else None
            self._log_refusal("RCPT", e, sender=sender, recipient=_path_of(arg))
            raise

    def _rcpt(self, arg: str) -> None:
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

        def accept(_=None) -> None:
            if address.lower() not in tx.addresses:
                tx.addresses.add(address.lower())
                tx.recipients.append(_make_recipient(address, rcpt.notify, rcpt.orcpt))
            self._reply(250, "2.1.5", "Ok")

        if self.junk_screen is None or self.user is not None:
            accept()
            return
        # DNS blocklists and greylisting (junk/screen.py) may refuse this recipient.
        d = self.junk_screen.at_rcpt(tx.sender, address, self.helo or "")
        self._wait(d.addCallbacks(accept, _screen_refusal))

    def _check_recipient(self, mbox: Mailbox) -> tuple[str, RecipientResult | None]:
        """The address to deliver to and what it resolved to, or the reply refusing it (no
        open relay)."""
        if not mbox.domain:
            # RFC 5321 §4.1.1.3 and §4.5.1: <Postmaster> without a domain names the postmaster
            # of this host, here that of the primary domain, checked now as that address would
            # be (alias or user) so that RCPT never says 250 to what delivery refuses.
            domains = self.services.config.domains
            if not domains:
                raise SmtpReply(550, "5.1.1", "<Postmaster>: Recipient address rejected")
            mbox = Mailbox("postmaster", domains[0].lower())
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
        if not self.services.message_memory.has_room(self._memory_key()):
            # RFC 5321 §4.5.3.1.10: refused before the client sends a body it would hold.
            raise self._memory_full("at DATA")
        self.body = BodyReader(
            self.cfg.max_message_size, self.cfg.max_text_line, self.cfg.bare_newline
        )
        self.mode = "data"
        self.conn.set_timeout(self.cfg.data_timeout)
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
        self.conn.set_timeout(self.cfg.data_timeout)
        # RFC 3030 §3: the chunk is read even when the command is refused.
        try:
            tx = self._ready_for_content()
            if tx.failed:
                raise SmtpReply(503, "5.5.1", "Error: transaction failed, send RSET")
            if size and not self.services.message_memory.has_room(self._memory_key()):
                # The chunk is lost, and with it the message: the transaction fails.
                tx.failed = True
                reply = self._memory_full("at BDAT")
                if tx.body is not None:
                    tx.body.refuse(reply)
                self._release_body()
                raise reply
        except SmtpReply as e:
            self.body = None
            self._bdat_error = e
            return
        self._bdat_error = None
        self.body = self.message_body(tx)

    def message_body(self, tx: Transaction) -> BodyReader:
        """The content BDAT chunks and BURL data (RFC 4468 §3.2) are added to, in order."""
        if tx.body is None:
            tx.body = BodyReader(
                self.cfg.max_message_size,
                self.cfg.max_text_line,
                self.cfg.bare_newline,
                dot_stuffed=False,
            )
        return tx.body

    def _end_of_chunk(self) -> None:
        err = self._bdat_error
        if err is not None:
            raise err
        body = self.body
        if self.bdat_last:
            body.finish()
            self._end_of_message()
            return
        if body.refusal is not None:
            self.tx.failed = True
            raise body.refusal
        if body.too_big:
            self.tx.failed = True
            raise SmtpReply(552, "5.3.4", "Error: message file too big")
        self._reply(250, "2.0.0", f"Ok: {body.size} octets received")

    # --- message memory (budget.py) ----------------------------------------------------------

    def _memory_key(self) -> str | None:
        """The address whose share a body counts toward; None (the total only) once logged in."""
        return None if self.user is not None else self.client_ip

    def _memory_full(self, when: str) -> SmtpReply:
        """The refusal of content there is no memory for (RFC 3463 X.3.1, temporary), logged."""
        budget = self.services.message_memory
        log.info(
            "smtp {ip}: message memory full {when}: address {share}/{per_ip} octets, total "
            "{held}/{total}; from=<{sender}> helo=<{helo}> user={user}",
            ip=self.client_ip,
            when=when,
            share=budget.held_by(self.client_ip) if self.user is None else "-",
            per_ip=budget.per_ip if self.user is None else "-",
            held=budget.held,
            total=budget.total,
            sender=visible(self.tx.sender) if self.tx is not None else "-",
            helo=visible(self.helo),
            user=visible(self.user) if self.user else "-",
        )
        return SmtpReply(452, "4.3.1", "Insufficient system storage")

    def hold_body(self) -> None:
        """Charge what the body holds now; when that would pass a bound, keep nothing more of
        it: the rest is still read (the stream stays in step) and its end answered 452."""
        body = self.body
        if body is None or body.refusal is not None:
            return
        if self.body_charge is None:
            self.body_charge = self.services.message_memory.charge(self._memory_key())
        if not self.body_charge.hold(body.held):
            body.refuse(self._memory_full("while the message arrived, discarding the rest"))
            self._release_body()

    def _release_body(self) -> None:
        """The transaction is over (or its content dropped): give its memory back."""
        charge, self.body_charge = self.body_charge, None
        if charge is not None:
            charge.release()

    # --- end of message: checks, headers, delivery ---------------------------------------------

    def _end_of_message(self) -> None:
        tx = self.tx
        try:
            self._end_of_data()
        except SmtpReply as e:
            self._release_body()
            self._log_refusal("DATA", e, sender=tx.sender, recipients=tx.recipients)
            raise
        except Exception:
            self._release_body()
            raise

    def _end_of_data(self) -> None:
        tx, body = self.tx, self.body
        self.body = None
        self.tx = None
        data = body.result()  # SmtpReply for size / bare newline / long lines
        if field_count(data[: header_end(data)], b"received") > self.cfg.max_hops:
            # RFC 5321 §6.3: a message that has passed this many servers is going round.
            raise SmtpReply(554, "5.4.6", "Error: too many hops")
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
            tls_info=self.conn.tls_info() if self.secure else None,
            recipient=tx.recipients[0].address if len(tx.recipients) == 1 else None,
        )
        envelope = _make_envelope(tx, self)
        if self.kind == "smtp" and self.user is None:
            # SPF/DKIM/DMARC for mail from other servers, never for submission.
            # The junk checks (domain lists, rspamd) run alongside SPF/DKIM/DMARC.
            junk = screen_after_data(self.junk_screen, envelope, data)
            d = check_inbound(self.services, self.client_ip, self.helo or "", tx.sender, data)
            d.addCallback(lambda verdict: junk.addCallback(lambda signals: (verdict, signals)))
            d.addCallback(self._apply_verdict, envelope, trace, data)
        else:
            d = self._deliver(envelope, trace + data)

        def delivered(report):
            for rcpt, reason in getattr(report, "failed", ()):
                # One reply covers every recipient: the others got their copy, this one did
                # not (e.g. over quota).  Delivery owns bouncing it; say so in the log.
                log.warn(
                    "smtp {ip}: {id} not delivered to {rcpt}: {reason}",
                    ip=self.client_ip,
                    id=queue_id,
                    rcpt=visible(rcpt),
                    reason=visible(repr(reason)),
                )
            log.info(
                "smtp {ip}: {id} accepted from=<{sender}> to={to} nrcpt={n} size={size} "
                "helo=<{helo}>",
                ip=self.client_ip,
                id=queue_id,
                sender=visible(tx.sender),
                to=_addresses(tx.recipients),
                n=len(tx.recipients),
                size=len(data),
                helo=visible(self.helo),
            )
            self.messages_accepted += 1
            self.services.metrics.message_received(self.kind)
            self._reply(250, "2.0.0", f"Ok: queued as {queue_id}")

        def failed(failure):
            self.services.metrics.message_refused(failure.value)
            reply = _delivery_failure_reply(failure, queue_id, tx)
            self._log_refusal(
                "DATA", reply, sender=tx.sender, recipients=tx.recipients, size=len(data)
            )
            raise reply

        # The content stays in memory until delivery is done with it, whatever happens to the
        # session meanwhile.
        charge, self.body_charge = self.body_charge, None
        d.addBoth(_given_back, charge)
        self._wait(d.addCallbacks(delivered, failed))

    def _apply_verdict(self, results, envelope: Envelope, trace: bytes, data: bytes):
        """Refuse (550/451), or deliver to INBOX or Junk with Authentication-Results on top
        and the junk checks' signals in the envelope."""
        verdict, envelope.junk_signals = results[0], tuple(results[1])
        if verdict.action in ("reject", "tempfail"):
            raise SmtpReply(verdict.code, verdict.enhanced, verdict.text)
        if verdict.action == "junk":
            envelope.folder = "Junk"
        return self._deliver(envelope, trace + verdict.apply(data))

    def _deliver(self, envelope: Envelope, data: bytes) -> defer.Deferred:
        """The one call into delivery: fires once every copy is safe, errbacks with the failure
        that `_delivery_failure_reply` turns into the reply."""
        try:
            return self.services.delivery.deliver(envelope, data)
        except Exception:
            return defer.fail()

    def _submission_rules(self, tx: Transaction, data: bytes) -> bytes:
        """RFC 6409 §8: From: must be the account's, Date:/Message-ID: are added if missing."""
        fields = headers.header_index(data)
        found = headers.from_addresses(data, fields)
        if found is None:
            data = b"From: <" + tx.sender.encode("utf-8") + b">\r\n" + data
        elif not found or any(a.lower() not in tx.senders for a in found):
            raise SmtpReply(553, "5.7.1", f"From: header address not owned by user {self.user}")
        return headers.add_missing_headers(data, self.hostname, fields=fields)

    def _log_refusal(
        self,
        stage: str,
        e: SmtpReply,
        sender: str | None = None,
        recipient: str | None = None,
        recipients=(),
        size: int | None = None,
    ) -> None:
        """One line per refused transaction or recipient, as Postfix's smtpd writes it: what
        was refused, the reply, and who asked (client, HELO, sender, recipient, size). Syntax
        and sequence errors (500-504) are the client's mistakes, not refused mail: no line."""
        if e.code < 400 or 500 <= e.code <= 504:
            return
        to = f"<{visible(recipient)}>" if recipient is not None else _addresses(recipients)
        log.info(
            "smtp {ip}: reject {stage}: {code} {enhanced} {reason}; from=<{sender}> to={to} "
            "size={size} helo=<{helo}> user={user}",
            ip=self.client_ip,
            stage=stage,
            code=e.code,
            enhanced=e.enhanced or "-",
            reason=visible(" / ".join(e.lines)),
            sender=visible(sender) if sender is not None else "-",
            to=to or "-",
            size=size if size is not None else "-",
            helo=visible(self.helo),
            user=visible(self.user) if self.user else "-",
        )


def _given_back(result, charge: BodyCharge | None):
    if charge is not None:
        charge.release()
    return result


def _make_recipient(address: str, notify, orcpt) -> Recipient:
    return Recipient(address, tuple(notify) if notify else (), orcpt)


def _make_envelope(tx: Transaction, session) -> Envelope:
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


def _path_of(arg: str) -> str:
    """The <path> of a MAIL/RCPT argument for a log line, as the client wrote it."""
    _, _, rest = arg.partition(":")
    path = rest.strip().split(" ", 1)[0] if rest else arg
    return path.strip().removeprefix("<").removesuffix(">")


def _addresses(recipients) -> str:
    return ",".join(f"<{visible(r.address)}>" for r in recipients)


def _reject_text(reason: str) -> str:
    """The script's reason as one printable line (it is the user's text, not ours)."""
    line = " ".join(reason.split())
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in line)[:200] or "rejected"


def _screen_refusal(failure: Failure):
    failure.trap(Refusal)
    e = failure.value
    raise SmtpReply(e.code, e.enhanced, e.text)


def _delivery_failure_reply(failure: Failure, queue_id: str, tx: Transaction) -> SmtpReply:
    if failure.check(SmtpReply):
        return failure.value
    if failure.check(Refusal):
        e = failure.value
        return SmtpReply(e.code, e.enhanced, e.text)
    if failure.check(JunkRefused):
        # RFC 3463 X.7.1: refused by policy; the reason names the signals that decided.
        verdict = failure.value.verdict
        reasons = "; ".join(verdict.reasons)[:300]
        return SmtpReply(
            550, "5.7.1", f"Message refused as junk (score {verdict.score:.1f}: {reasons})"
        )
    if failure.check(UnknownRecipient):
        # The account vanished between RCPT and the end of DATA.
        return SmtpReply(550, "5.1.1", "Error: recipient address rejected: User unknown")
    if failure.check(QuotaExceeded):
        return _quota_reply(failure.value, "Error: mailbox full")
    if failure.check(MessageRejected):
        # RFC 5429 §2.1: the recipient's Sieve script refused it, said in the dialogue.
        return SmtpReply(550, "5.7.1", _reject_text(str(failure.value)))
    log.failure(
        "smtp: {id} from=<{sender}> to={to}: delivery failed",
        failure,
        id=queue_id,
        sender=visible(tx.sender),
        to=_addresses(tx.recipients),
    )
    # Nothing is half-delivered: delivery fires only when every copy is safe, and a retry of
    # the same message after 451 must not duplicate what was stored.
    return SmtpReply(451, "4.3.0", "Error: temporary failure, try again later")
