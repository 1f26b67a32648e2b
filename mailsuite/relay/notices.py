"""What the sender of a queued message hears: which RFC 3464 notices an entry owes after an
attempt (failure, relayed, delay), composed (spool/bounce.py) and handed on, to a local sender
through local delivery (a callable given at wiring) and to others through the queue."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.durable import DurableIO
from mailsuite.logtext import visible
from mailsuite.spool import bounce
from mailsuite.spool.queue import DELIVERED, FAILED, Queue, QueueEntry, QueueError

log = Logger(namespace="mailsuite.relay.runner")


class Notices:
    """`deliver_notice(recipient, data, helo)` -> Deferred[bool] stores a notice for a local
    sender (False: not local); None queues every notice."""

    def __init__(self, config, queue: Queue, io: DurableIO, deliver_notice: Callable | None):
        self.config = config
        self.relay = config.relay
        self.queue = queue
        self.io = io
        self.deliver_notice = deliver_notice

    def owed(self, entry: QueueEntry, dsn_passed: set[str], now: float) -> list[list]:
        """The notices an entry owes now, one list of reports per notice; marks the delay
        warning as given (send() takes it back when it cannot be sent)."""
        notify = bounce.should_notify(entry)
        failed, succeeded, delayed = [], [], []
        for r in entry.recipients:
            if r.state == FAILED and not r.dsn_sent:
                if notify and bounce.wants_notice(r, bounce.FAILED):
                    failed.append(bounce.Report(r, bounce.FAILED))
            elif r.state == DELIVERED and not r.dsn_sent:
                # RFC 3461 §5.2.2: a DSN-capable next hop got NOTIFY and reports success
                # itself; otherwise we say "relayed".
                if (
                    notify
                    and r.address not in dsn_passed
                    and "SUCCESS" in [n.upper() for n in r.notify or []]
                ):
                    succeeded.append(bounce.Report(r, bounce.RELAYED))
        if (
            notify
            and entry.pending
            and not entry.delay_warned
            and now - entry.created >= self.relay.delay_warning
        ):
            delayed = [
                bounce.Report(r, bounce.DELAYED)
                for r in entry.pending
                if bounce.wants_notice(r, bounce.DELAYED)
            ]
            entry.delay_warned = True
        return [reports for reports in (failed, succeeded, delayed) if reports]

    async def send_all(self, entry: QueueEntry, notices: list[list]) -> set[int]:
        """Send each notice; the ids of the recipients whose notice could not be sent (kept
        owed: the entry stays and the notice is tried again later)."""
        unsent: set[int] = set()
        for reports in notices:
            try:
                await self.send(entry, reports)
            except Exception as e:
                log.error("relay: {id}: notice not sent: {e}", id=entry.id, e=visible(repr(e)))
                unsent.update(id(rep.recipient) for rep in reports)
                if reports[0].action == bounce.DELAYED:
                    entry.delay_warned = False
        return unsent

    async def send(self, entry: QueueEntry, reports: list[bounce.Report]) -> None:
        """Compose the DSN and hand it on: local senders through delivery, others queued."""

        def compose() -> bytes:
            try:
                original = self.queue.read_message(entry.id)
            except QueueError:
                original = b""
            return bounce.compose_dsn(
                entry, reports, original, self.config.hostname, max_age=self.relay.max_age
            )

        data = await self.io.submit(compose)
        sender = entry.mail_from
        kinds = ",".join(sorted({r.action for r in reports}))
        if await self._deliver_locally(sender, data):
            log.info(
                "relay: {id}: {k} notice delivered to local <{s}>",
                id=entry.id,
                k=kinds,
                s=visible(sender),
            )
            return
        qid = await self.io.submit(lambda: self.queue.enqueue("", [sender], data, is_bounce=True))
        log.info(
            "relay: {id}: {k} notice to <{s}> queued as {q}",
            id=entry.id,
            k=kinds,
            s=visible(sender),
            q=qid,
        )

    async def _deliver_locally(self, sender: str, data: bytes) -> bool:
        """True once the notice is in a local mailbox (or dropped there, RFC 3461 §6.2);
        False if the sender is not local or there is no local delivery."""
        if self.deliver_notice is None:
            return False
        delivered = await defer.maybeDeferred(
            self.deliver_notice, sender, data, self.config.hostname
        )
        return delivered is not False
