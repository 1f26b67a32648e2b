"""The one path a message takes into the system: resolve recipients, then store local copies
and queue remote ones, all durably, before anybody is told "accepted".

SMTP, `mailsuite deliver`, bounces and imports all come through here, so durability, quota and
IDLE notification are written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.accounts.db import Accounts
from mailsuite.junk.filter import JunkFilter
from mailsuite.junk.verdict import Verdict
from mailsuite.logtext import visible
from mailsuite.metrics import DISABLED, Metrics
from mailsuite.sieve.filtering import SieveFilter
from mailsuite.sieve.message_view import MessageInput
from mailsuite.spool import bounce
from mailsuite.spool.queue import Queue, QueuedRecipient, QueueEntry
from mailsuite.store import (
    BadFolderName,
    FolderExists,
    Mailbox,
    NoSuchFolder,
    NoSuchMailbox,
    QuotaExceeded,
    Store,
)
from mailsuite.store.flags import canonical_flag

log = Logger(namespace="mailsuite.delivery")


class TemporaryFailure(Exception):
    """Nothing was delivered; the sender should try again (SMTP 451 4.3.0, sysexits 75)."""


class UnknownRecipient(Exception):
    """SMTP 550 5.1.1, sysexits 67."""


class MessageRejected(Exception):
    """The recipient's Sieve script refused the message (RFC 5429): SMTP 550 5.7.1 when it
    was the only recipient, else a failure notice to the sender."""


@dataclass(frozen=True)
class Recipient:
    address: str
    notify: tuple[str, ...] = ()  # RFC 3461 NOTIFY values, upper case
    orcpt: str | None = None  # RFC 3461 ORCPT, "rfc822;addr"


@dataclass
class Envelope:
    mail_from: str  # "" for the null sender
    recipients: list[Recipient]
    dsn_ret: str | None = None
    dsn_envid: str | None = None
    authenticated_user: str | None = None
    client_ip: str | None = None
    helo: str | None = None
    smtputf8: bool = False
    folder: str = "INBOX"  # "Junk" when inbound checks say so
    junk_signals: tuple = ()  # junk.verdict.Signal found before delivery (DNS lists, rspamd)


@dataclass(frozen=True)
class RecipientResult:
    kind: str  # "local", "remote" or "unknown"
    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()


@dataclass
class DeliveryReport:
    local: list[tuple[str, str]] = field(default_factory=list)  # (mailbox, key)
    queue_id: str | None = None
    failed: list[tuple[str, Exception]] = field(default_factory=list)  # (recipient, reason)
    filed: list[tuple[str, str]] = field(default_factory=list)  # (mailbox, folder) of copies


def message_id(data: bytes) -> str:
    """The Message-ID header's value for log lines ("-" when there is none)."""
    end = data.find(b"\r\n\r\n")
    # A bare-LF blank line before it (looked for only that far: a whole scan of a CRLF
    # message for one it does not have was most of the cost).
    lf = data.find(b"\n\n", 0, end if end >= 0 else len(data))
    end = lf if lf >= 0 else end
    head = data[:end] if end >= 0 else data[:65536]
    # The first line that starts with the field name, found by searching rather than by
    # splitting the header into lines (the log line of every delivery asks).
    lower = head.lower()
    at = lower.find(b"message-id:")
    while at > 0 and head[at - 1] != 0x0A:
        at = lower.find(b"message-id:", at + 1)
    if at < 0:
        return "-"
    stop = head.find(b"\n", at)
    value = head[at + 11 : stop if stop >= 0 else len(head)]
    return value.strip().decode("utf-8", "replace") or "-"


class Delivery:
    def __init__(
        self,
        accounts: Accounts,
        store: Store,
        queue: Queue,
        hostname: str = "localhost",
        sieve: SieveFilter | None = None,
        metrics: Metrics = DISABLED,
        junk: JunkFilter | None = None,
    ):
        self.metrics = metrics
        self.accounts = accounts
        self.store = store
        self.queue = queue
        self.hostname = hostname
        self.sieve = sieve
        self.junk = junk

    def resolve(self, address: str) -> RecipientResult:
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if not domain:
            return RecipientResult("unknown")
        is_local, res = self.accounts.route(address)
        if not is_local:
            return RecipientResult("remote", remote=(address,))
        if res is None:
            return RecipientResult("unknown")
        return RecipientResult("local", res.local, res.remote)

    def check_quota(self, address: str, size: int, res: RecipientResult | None = None) -> None:
        """Raise QuotaExceeded early (at RCPT, with the SIZE the client declared); `res` is
        the address's resolve() when the caller has just made it."""
        if res is None:
            res = self.resolve(address)
        for mailbox in res.local:
            try:
                self.store.mailbox(mailbox).check_quota(size)
            except NoSuchMailbox:
                continue

    def deliver(self, envelope: Envelope, data: bytes) -> defer.Deferred:
        """Deferred[DeliveryReport], firing once every copy is fsynced; TemporaryFailure when
        nothing could be stored (and nothing was left half-delivered).  Call it on the reactor
        thread: the recipients are resolved here (the accounts' lookup cache RCPT has just
        warmed), the copies are written by _store in the durable-I/O service's pool, then
        the delivery is logged and IDLE sessions are told, back on the reactor (log lines
        written from the pool cost the pool's threads and the reactor each other's GIL)."""
        started = time.monotonic()
        try:
            routed = self._route(envelope)
        except Exception:
            return defer.fail()
        d = self.store.io.submit(self._store, envelope, data, routed)

        def notify(report: DeliveryReport):
            self.metrics.delivered(len(report.local), report.queue_id is not None, started)
            self._log(envelope, data, report, len(routed[1]))
            for mailbox, folder in report.filed:
                self.store.notify_delivery(mailbox, folder)
                if folder != "INBOX":
                    self.store.notify_delivery(mailbox, "INBOX")
            return report

        return d.addCallback(notify)

    def deliver_blocking(self, envelope: Envelope, data: bytes) -> DeliveryReport:
        """The same delivery, blocking, in the caller's thread: the admin command
        (`mailsuite deliver`) and the notices a delivery owes."""
        routed = self._route(envelope)
        report = self._store(envelope, data, routed)
        self._log(envelope, data, report, len(routed[1]))
        return report

    def _store(self, envelope: Envelope, data: bytes, routed) -> DeliveryReport:
        """Write the local copies and the queue entry (blocking), then conclude; the caller
        logs the report (_log)."""
        local, remote, failed = routed
        report = DeliveryReport(failed=failed)
        written: list[tuple[Mailbox, str, str]] = []
        # What Sieve runs owe once every copy is stored: redirects, replies, its state.
        outgoing: list[Callable[[], None]] = []
        # The junk filter's verdict per local recipient (folder and X-Spam-* fields); it
        # raises JunkRefused when the message is refused for every one of them. Sieve runs
        # after it, on the message with those fields, its implicit keep in the verdict's folder.
        verdicts = self.junk.judge(envelope, data, local, remote) if self.junk else {}
        try:
            for mailbox in local:
                try:
                    verdict = verdicts.get(mailbox) or Verdict(envelope.folder)
                    copies = self._local_copies(
                        envelope,
                        verdict.apply(data),
                        mailbox,
                        local[mailbox],
                        outgoing,
                        verdict.folder,
                    )
                    for folder, flags, copy in copies:
                        mbox = self._mailbox(mailbox)
                        key = mbox.deliver(
                            self._trace_headers(envelope.mail_from, mailbox) + copy, folder, flags
                        )
                        written.append((mbox, folder, key))
                        report.filed.append((mailbox, folder))
                        if len(report.filed) == 1 or report.filed[-2][0] != mailbox:
                            report.local.append((mailbox, key))
                except (QuotaExceeded, MessageRejected) as e:
                    report.failed.append((mailbox, e))
                    continue
            if remote:
                report.queue_id = self.queue.enqueue(
                    envelope.mail_from, remote, data, envelope.dsn_ret, envelope.dsn_envid
                )
            for send in outgoing:
                send()
        except (OSError, NoSuchFolder, TemporaryFailure) as e:
            self._undo(written)
            log.error(
                "delivery of {msgid} from <{sender}> to {to} failed, nothing kept: {err}",
                msgid=visible(message_id(data)),
                sender=visible(envelope.mail_from),
                to=",".join(f"<{visible(r.address)}>" for r in envelope.recipients),
                err=visible(str(e)),
            )
            raise TemporaryFailure(str(e)) from e
        notices = self._conclude(envelope, local, report)
        self._send_notices(envelope, data, notices)
        return report

    def deliver_notice(self, recipient: str, data: bytes, helo: str) -> defer.Deferred:
        """A delivery status notice (from the null sender) for `recipient`, stored here when
        the address is local: Deferred[bool], False when it is not local (the caller queues
        it).  The relay runner receives this at wiring, as its way into local mailboxes."""
        if self.resolve(recipient).kind != "local":
            return defer.succeed(False)
        envelope = Envelope("", [Recipient(recipient)], helo=helo, client_ip="127.0.0.1")

        def dropped(failure):
            failure.trap(UnknownRecipient)
            # RFC 3461 §6.2: a notice that cannot be delivered is dropped, never bounced.
            log.warn("notice for unknown local sender <{s}> dropped", s=visible(recipient))

        return self.deliver(envelope, data).addCallbacks(lambda _: True, dropped)

    def _route(self, envelope: Envelope):
        """(local mailbox -> the recipient that led to it, remote recipients, unknown ones)."""
        local: dict[str, Recipient] = {}
        remote: list[Recipient] = []
        failed: list[tuple[str, Exception]] = []
        for rcpt in envelope.recipients:
            res = self.resolve(rcpt.address)
            if res.kind == "unknown":
                failed.append((rcpt.address, UnknownRecipient(rcpt.address)))
                continue
            for mailbox in res.local:
                local.setdefault(mailbox, rcpt)
            for addr in res.remote:
                remote.append(Recipient(addr, rcpt.notify, rcpt.orcpt or f"rfc822;{rcpt.address}"))
        return local, remote, failed

    def _target(self, mailbox: str, folder: str) -> tuple[Mailbox, str]:
        mbox = self._mailbox(mailbox)
        return mbox, folder if mbox.exists(folder) else "INBOX"

    def _local_copies(self, envelope, data, mailbox, rcpt, outgoing, keep_folder) -> list:
        """[(folder, flags, bytes)] to store for `mailbox`: where its Sieve script files the
        message (docs/filtering.md), or the one copy for `keep_folder` (the envelope's folder,
        or Junk by the junk filter's verdict).  Redirects and vacation replies (and the state
        they leave) are added to `outgoing`, to run once every copy is stored;
        MessageRejected for a reject."""
        mbox, folder = self._target(mailbox, keep_folder)
        if self.sieve is None:
            return [(folder, (), data)]
        # Its time (`now`) is taken by the run, only for an account that has a script.
        message = MessageInput(data, envelope.mail_from, rcpt.address, mailbox, folder)
        outcome = self.sieve.run(
            mbox.path, message, lambda: _folders(mbox), partial(_folder_exists, mbox)
        )
        if outcome is None:
            return [(folder, (), data)]
        plan = self.sieve.plan(mbox.path, message, outcome)
        if plan.reject is not None:
            raise MessageRejected(plan.reject)
        for kind, sender, address, body in plan.sends:
            outgoing.append(partial(self._send_generated, kind, sender, address, body))
        outgoing.extend(plan.after)
        return [
            (self._sieve_folder(mbox, store), tuple(canonical_flag(f) for f in store.flags), body)
            for store, body in plan.copies
        ]

    def _sieve_folder(self, mbox: Mailbox, store) -> str:
        """The folder a copy goes to, made when the script said :create (RFC 5490)."""
        if mbox.exists(store.folder):
            return store.folder
        try:
            mbox.create_folder(store.folder, special_use=store.special_use)
        except FolderExists:
            pass
        except (BadFolderName, ValueError) as e:
            self.sieve.note_error(mbox.path, mbox.address, f"fileinto {store.folder!r}: {e}")
            return "INBOX"
        return store.folder

    def _send_generated(self, kind: str, mail_from: str, address: str, data: bytes) -> None:
        """A redirected copy or a vacation reply: stored here when the address is local,
        else queued for the relay (which DKIM-signs it)."""
        log.info("sieve {kind} to <{address}>", kind=kind, address=visible(address))
        if self.resolve(address).kind == "local":
            try:
                self.deliver_blocking(Envelope(mail_from, [Recipient(address)]), data)
            except (UnknownRecipient, QuotaExceeded, MessageRejected) as e:
                log.warn(
                    "sieve: copy for <{a}> not stored: {e}", a=visible(address), e=visible(str(e))
                )
            return
        self.queue.enqueue(mail_from, [address], data, is_bounce=not mail_from)

    def _conclude(self, envelope: Envelope, local: dict, report: DeliveryReport) -> list:
        """Refuse when nobody got a copy, and return the RFC 3461 notices owed to the
        sender."""
        if not report.local and not report.queue_id and report.failed:
            # Nobody got a copy: let the caller refuse the whole message with the reason.
            raise report.failed[0][1]
        return self._notices(envelope, local, report)

    @staticmethod
    def _log(envelope: Envelope, data: bytes, report: DeliveryReport, n_remote: int) -> None:
        """What a delivery did, one line per local copy and one for the queue entry."""
        # Only the local deliveries' lines name the message.
        msgid = message_id(data) if report.local else "-"
        for mailbox, key in report.local:
            log.info(
                "delivered {msgid} to {mailbox} from <{sender}> size {size} key {key} "
                "client {ip} helo <{helo}>",
                msgid=visible(msgid),
                mailbox=visible(mailbox),
                sender=visible(envelope.mail_from),
                key=key,
                size=len(data),
                ip=visible(envelope.client_ip or "local"),
                helo=visible(envelope.helo),
            )
        if report.queue_id:
            log.info(
                "queued {id} from <{sender}> for {n} remote recipient(s)",
                id=report.queue_id,
                sender=visible(envelope.mail_from),
                n=n_remote,
            )

    def _notices(self, envelope: Envelope, local: dict, report: DeliveryReport) -> list:
        """RFC 3461: the message was accepted, so what happened to each local recipient is told
        to the sender by DSN: a failure (a mailbox over quota while others took their copy) and,
        when NOTIFY=SUCCESS asked for it, a "delivered" notice.  Never to the null sender."""
        if not envelope.mail_from:
            return []
        reports = []
        for address, reason in report.failed:
            rcpt = local.get(address) or Recipient(address)
            status = "5.2.2" if isinstance(reason, QuotaExceeded) else "5.1.1"
            if isinstance(reason, MessageRejected):
                status = "5.7.1"
            qr = QueuedRecipient(
                address,
                list(rcpt.notify) or None,
                rcpt.orcpt,
                status=status,
                diagnostic=str(reason),
            )
            if bounce.wants_notice(qr, bounce.FAILED):
                reports.append(bounce.Report(qr, bounce.FAILED))
        for mailbox, _ in report.local:
            rcpt = local[mailbox]
            if not rcpt.notify:
                continue  # RFC 3461 §4.1: without NOTIFY, no success notice (wants_notice)
            qr = QueuedRecipient(
                rcpt.address, list(rcpt.notify) or None, rcpt.orcpt, status="2.0.0"
            )
            if bounce.wants_notice(qr, bounce.DELIVERED):
                reports.append(bounce.Report(qr, bounce.DELIVERED))
        return reports

    def _send_notices(self, envelope: Envelope, data: bytes, reports: list) -> None:
        """Deliver or queue the notices (blocking)."""
        if not reports:
            return
        entry = QueueEntry(
            id="local",
            mail_from=envelope.mail_from,
            recipients=[r.recipient for r in reports],
            created=time.time(),
            dsn_ret=envelope.dsn_ret,
            dsn_envid=envelope.dsn_envid,
        )
        notice = bounce.compose_dsn(entry, reports, data, self.hostname)
        sender = Recipient(envelope.mail_from)
        try:
            if self.resolve(envelope.mail_from).kind == "local":
                self.deliver_blocking(Envelope("", [sender]), notice)
            else:
                self.queue.enqueue("", [sender], notice, is_bounce=True)
        except Exception as e:  # a notice that cannot be sent is dropped, never bounced (§6.2)
            log.warn(
                "notice to <{sender}> dropped: {err}",
                sender=visible(envelope.mail_from),
                err=visible(str(e)),
            )

    def _mailbox(self, address: str) -> Mailbox:
        try:
            return self.store.mailbox(address)
        except NoSuchMailbox:
            # A user added by the admin command before its Maildir exists (or a lost Maildir):
            # create it rather than lose mail.
            user = self.accounts.get_user(address)
            quota = (user.quota_bytes, user.quota_messages) if user else (0, 0)
            return self.store.create_mailbox(address, *quota)

    @staticmethod
    def _trace_headers(mail_from: str, mailbox: str) -> bytes:
        # RFC 5321 §4.4: the final delivery adds Return-Path with the envelope sender.
        return f"Return-Path: <{mail_from}>\r\nDelivered-To: {mailbox}\r\n".encode(
            "utf-8", "surrogateescape"
        )

    @staticmethod
    def _undo(written) -> None:
        for mbox, folder, key in written:
            mbox.withdraw(folder, key)


def _folder_exists(mbox: Mailbox, name: str) -> bool:
    """Whether `mbox` has the folder `name` (a name the store refuses: no such folder)."""
    try:
        return mbox.exists(name)
    except BadFolderName:
        return False


def _folders(mbox: Mailbox) -> dict[str, str | None]:
    """The account's folders and their special uses, for mailboxexists and :specialuse."""
    uses = mbox.special_use()
    return {name: uses.get(name) for name in mbox.list_folders()}
