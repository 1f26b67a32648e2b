"""The queue runner: decides when each queued message is tried, where, and what the sender hears.

Like Postfix's qmgr, it keeps only a cache of the spool in memory, rebuilt from disk at start
(so a kill -9 loses nothing: anything not finished is still on disk and is tried again).  Due
entries are split into one job per destination (a domain, or the smarthost); a bounded number
of workers per destination, and in total, take jobs and reuse their connection for the next
job to the same place (sending.py); an entry is started when it falls due (one timer, for
the earliest waiting).  When every job of an entry is done, the entry is updated
on disk, notices are sent (notices.py), and it is removed once nothing is left to do.  Message
bytes are made ready one way (`_ready`, DKIM-signing them in the durable-I/O service's pool):
read from the spool a batch of due entries at a time, or, for an entry this process has just
queued, taken from the job that wrote it.

`mailsuite queue flush` reaches a running server by touching ``<queue>/flush.trigger``
(polled every ``relay.scan_interval``) or by SIGUSR1; both make the runner re-read the spool.
"""

from __future__ import annotations

import heapq
import signal
import threading
import time
from collections import defaultdict

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread

from mailsuite.logtext import visible
from mailsuite.relay.client import RecipientOutcome
from mailsuite.relay.notices import Notices
from mailsuite.relay.sending import SMARTHOST, Active, Job, Senders
from mailsuite.spool.queue import DELIVERED, FAILED, PENDING, Queue, QueueEntry, QueueError
from mailsuite.trust import dkim

log = Logger()

# Full directory re-reads (for entries written by other processes) every this many ticks.
RESCAN_TICKS = 30
# Messages read from disk in one trip to the durable pool (see QueueRunner._read).
READ_BATCH = 32
MAX_ACTIVE = 1000
MAX_RCPTS_PER_TRANSACTION = 100
# Finished entries are removed this long after the first of a batch finished: one trip to the
# durable pool for every few messages instead of one for each saves reactor time per relayed
# message at full load (measured with bench/relay.py).
REMOVE_DELAY = 0.01


def sign_hook(services, mail_from: str, data: bytes) -> bytes:
    """The one place outbound mail is DKIM-signed (``mailsuite.trust.dkim.sign``); the message
    unchanged when signing fails.  Blocking (keys, RSA): called in a
    worker thread together with reading the message."""
    try:
        return dkim.sign(services, mail_from.rpartition("@")[2], data)
    except Exception:
        log.failure("relay: DKIM signing failed; sending unsigned")
        return data


class SigningProbe:
    """Whether any DKIM key exists at all (data_dir/dkim/ non-empty), re-checked every few
    seconds: without keys a message enqueued in this process needs no thread hop at all."""

    TTL = 5.0

    def __init__(self, services):
        self.services = services
        self.checked = 0.0
        self.possible = True

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.checked > self.TTL:
            self.checked = now
            self.possible = self._probe()
        return self.possible

    def _probe(self) -> bool:
        config = self.services.config
        trust = getattr(config, "trust", None)
        if trust is not None and not getattr(trust, "dkim_sign", True):
            return False
        try:
            return any(dkim.dkim_dir(config).iterdir())
        except OSError:
            return False


def _split(items: list, test) -> tuple[list, list]:
    """(the items that pass `test`, the others), each in order."""
    yes, no = [], []
    for item in items:
        (yes if test(item) else no).append(item)
    return yes, no


def retry_delay(schedule: list[int], attempts: int) -> int:
    """Growing intervals, then the last one forever (default 5, 10, 20, 40 min, then hourly)."""
    if not schedule:
        return 300
    return schedule[min(max(attempts, 1) - 1, len(schedule) - 1)]


class QueueRunner(service.Service):
    name = "relay"

    def __init__(self, services, deliver_notice=None, reactor=None):
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.services = services
        self.config = services.config
        self.relay = services.config.relay
        self.queue: Queue = services.queue
        self.io = self.queue.io
        self.entries: dict[str, QueueEntry] = {}
        self.heap: list[tuple[float, str]] = []
        self.active: dict[str, Active] = {}
        self.senders = Senders(self.config, reactor, self.active, self._job_done)
        # Local delivery of notices is given at wiring (Delivery.deliver_notice): the relay
        # never imports delivery.
        self.notices = Notices(self.config, self.queue, self.io, deliver_notice)
        self.loop: task.LoopingCall | None = None
        self.ticks = 0
        self.ready = False
        self.scanning = False
        # Finished entries waiting for their batch removal (_remove); each stays active until
        # its spool file is gone.
        self.to_remove: list[str] = []
        self.removing = False
        self.remove_timer = None
        # Wakes the runner when the earliest waiting entry falls due (at due_at, wall clock).
        self.due_timer = None
        self.due_at = 0.0
        self.signing_possible = SigningProbe(services)
        # Entries announced by the queue's listener, from any thread, not yet taken up.
        self._arrivals: list[tuple[QueueEntry, object]] = []
        # Messages of arrivals read in the job that queued them, for the _run_due of the
        # reactor turn that takes them up (see _enqueued); message or the exception its read
        # raised, by entry id.
        self.preloaded: dict[str, object] = {}
        self._arrivals_lock = threading.Lock()
        self._arrivals_posted = False

    # -- lifecycle ----------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.senders.running = True
        self.queue.add_listener(self._enqueued)
        if threading.current_thread() is threading.main_thread():
            try:
                signal.signal(signal.SIGUSR1, lambda *_: self.reactor.callFromThread(self.rescan))
            except ValueError:
                pass
        d = self.rescan()
        d.addCallback(lambda _: self._started())

    def _started(self) -> None:
        self.ready = True
        self.loop = task.LoopingCall(self._tick)
        self.loop.clock = self.reactor
        self.loop.start(self.relay.scan_interval, now=True).addErrback(
            lambda f: log.failure("relay: runner loop stopped", f)
        )
        log.info("relay: queue runner started with {n} queued", n=len(self.entries))

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.queue.remove_listener(self._enqueued)
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        if self.due_timer is not None and self.due_timer.active():
            self.due_timer.cancel()
        # In-flight work is still on disk; it is tried again at the next start.
        self.senders.abort()
        if self.remove_timer is not None and self.remove_timer.active():
            # Delivered entries waiting for their batch: removed now, or sent again after a
            # restart.
            self.remove_timer.cancel()
            batch, self.to_remove = self.to_remove, []
            try:
                self.queue.remove_many(batch)
            except OSError as e:
                log.error("relay: removing finished entries failed: {e}", e=e)

    # -- learning about entries ---------------------------------------------------------

    def _enqueued(self, entry: QueueEntry, data: bytes) -> None:
        """The queue's listener, called on whichever thread enqueued: for SMTP deliveries the
        durable pool's, inside the job that wrote the entry.  There the message is signed by
        the same `_ready` every entry read from the spool goes through, from `data`, the bytes
        the spool file has just been made of (reading them back would cost the pool's thread
        three system calls, each a wait for the GIL); and the entry reaches the reactor with
        that job's result (DurableIO.call_soon), not by a wake-up of its own.  Entries
        announced together are taken up in one reactor turn."""
        if isInIOThread():
            # Written on the reactor thread (tests): read in the pool like a re-scanned entry.
            arrival = (entry, None)
        else:
            arrival = (entry, self._ready(entry, data, self.signing_possible()))
        with self._arrivals_lock:
            self._arrivals.append(arrival)
            if self._arrivals_posted:
                return
            self._arrivals_posted = True
        self.io.call_soon(self._take_arrivals)

    def _take_arrivals(self) -> None:
        with self._arrivals_lock:
            arrivals, self._arrivals = self._arrivals, []
            self._arrivals_posted = False
        for entry, data in arrivals:
            if data is not None:
                self.preloaded[entry.id] = data
            self._add(entry, run=False)
        if self.ready:
            self._run_due()
        # Read ahead only for entries started now; others are read when they fall due.
        self.preloaded.clear()

    def _add(self, entry: QueueEntry, run: bool = True) -> None:
        if entry.id in self.active:
            return
        self.entries[entry.id] = entry
        self._push(entry)
        if run and self.ready:
            self._run_due()

    def rescan(self) -> defer.Deferred:
        """Re-read the whole spool: at start, on SIGUSR1, on the flush trigger."""
        if self.scanning:
            return defer.succeed(None)
        self.scanning = True

        def read():
            self.queue.clean_orphans()
            return list(self.queue.entries())

        def got(entries: list[QueueEntry]) -> None:
            self.scanning = False
            on_disk = {e.id for e in entries}
            for qid in list(self.entries):
                if qid not in on_disk and qid not in self.active:
                    del self.entries[qid]  # deleted by `mailsuite queue delete`
                    self.preloaded.pop(qid, None)
            for entry in entries:
                if entry.id not in self.active:
                    self._add(entry)

        def failed(f):
            self.scanning = False
            log.failure("relay: reading the queue failed", f)

        return self.io.submit(read).addCallbacks(got, failed)

    def _new_ids(self) -> defer.Deferred:
        """Pick up entries written by another process (cheap: one listdir)."""

        known = set(self.entries)  # copied here: the thread must not iterate a live dict

        def read():
            out = []
            for qid in self.queue.ids():
                if qid not in known:
                    try:
                        out.append(self.queue.load(qid))
                    except QueueError:
                        continue
            return out

        d = self.io.submit(read)
        d.addCallback(lambda entries: [self._add(e) for e in entries if e.id not in self.entries])
        d.addErrback(lambda f: log.failure("relay: scanning the queue failed", f))
        return d

    def _tick(self) -> defer.Deferred:
        self.ticks += 1
        # The trigger files are taken (unlinked) in the durable pool: the reactor never
        # waits on the disk, not even for an unlink once a second.
        d = self.io.submit(self._take_triggers)
        d.addCallback(self._triggered)
        d.addErrback(lambda f: log.failure("relay: reading the queue's triggers failed", f))
        return d

    def _take_triggers(self) -> tuple[bool, bool]:
        flush = self.queue.take_trigger()
        return flush, not flush and self.queue.take_new_trigger()

    def _triggered(self, taken: tuple[bool, bool]) -> None:
        flush, new = taken
        if flush:
            log.info("relay: flush requested; re-reading the queue")
            self.rescan().addCallback(lambda _: self._run_due())
        elif new or self.ticks % RESCAN_TICKS == 0:
            self._new_ids()
        self._run_due()

    # -- scheduling ---------------------------------------------------------------------

    def _run_due(self) -> None:
        now = time.time()
        # A bounded number of entries in flight (Postfix's qmgr_message_active_limit): after an
        # outage the whole backlog is due at once and must not be read into memory at once.
        started: list[tuple[Active, list[Job]]] = []
        while self.heap and self.heap[0][0] <= now and len(self.active) < MAX_ACTIVE:
            when, qid = heapq.heappop(self.heap)
            entry = self.entries.get(qid)
            if entry is None or qid in self.active or entry.next_attempt != when:
                continue  # stale heap item
            got = self._start(entry)
            if got is not None:
                started.append(got)
        if self.preloaded and started:
            # Arrivals whose message was read in the job that queued it.
            have, started = _split(started, lambda s: s[0].entry.id in self.preloaded)
            if have:
                self._loaded([self.preloaded.pop(act.entry.id) for act, _ in have], have)
        sign = bool(started) and self.signing_possible()
        for i in range(0, len(started), READ_BATCH):
            self._read_batch(started[i : i + READ_BATCH], sign)
        self.senders.spawn()
        if self.heap and len(self.active) < MAX_ACTIVE:
            self._wake_at(self.heap[0][0])

    def _push(self, entry: QueueEntry) -> None:
        """Schedule the entry for its next attempt (what falls due now is started by the
        caller's _run_due; a later time gets the due timer)."""
        heapq.heappush(self.heap, (entry.next_attempt, entry.id))
        if self.ready and entry.next_attempt > time.time():
            self._wake_at(entry.next_attempt)

    def _wake_at(self, when: float) -> None:
        """Run _run_due at `when` (wall clock): an entry is tried when it falls due, not up
        to a scan interval later.  One timer, for the earliest time asked."""
        timer = self.due_timer
        if timer is not None and timer.active():
            if self.due_at <= when:
                return
            timer.cancel()
        self.due_at = when
        self.due_timer = self.reactor.callLater(max(0.0, when - time.time()), self._due)

    def _due(self) -> None:
        self.due_timer = None
        self._run_due()

    def _start(self, entry: QueueEntry) -> tuple[Active, list[Job]] | None:
        """Make the entry's jobs, to be queued once its message is read; None when it owes
        only notices (straight to bookkeeping)."""
        act = Active(entry)
        self.active[entry.id] = act
        pending = entry.pending
        if not pending:
            # Only notices are owed (e.g. `queue bounce`): straight to bookkeeping.
            self._finish(act)
            return None
        groups: dict[tuple[str, str], list] = defaultdict(list)
        for r in pending:
            domain = r.address.rpartition("@")[2].lower()
            # A smarthost takes every recipient in one transaction.
            key = (SMARTHOST, "") if self.relay.smarthost else (domain, domain)
            groups[key].append(r)
        # RFC 5321 §4.5.3.1.8: a server must take 100 recipients per transaction; no more.
        n = MAX_RCPTS_PER_TRANSACTION
        jobs = [
            Job(entry.id, key, domain, rcpts[i : i + n])
            for (key, domain), rcpts in groups.items()
            for i in range(0, len(rcpts), n)
        ]
        act.outstanding = len(jobs)
        act.attempted = True
        return act, jobs

    def _read_batch(self, batch: list[tuple[Active, list[Job]]], sign: bool) -> None:
        d = self.io.submit(self._read, [act.entry for act, _ in batch], sign)
        d.addErrback(lambda f: [f.value] * len(batch))
        d.addCallback(self._loaded, batch)

    def _read(self, entries: list[QueueEntry], sign: bool) -> list:
        """In the durable pool: the messages of entries just started, read from the spool and
        signed, or the error each gave.  One trip for a batch: each trip costs the reactor a
        hand-over."""
        out: list = []
        for entry in entries:
            try:
                out.append(self._ready(entry, self.queue.read_message(entry.id), sign))
            except Exception as e:
                out.append(e)
        return out

    def _ready(self, entry: QueueEntry, data: bytes, sign: bool) -> bytes:
        """The message as it is sent: `data`, the entry's message as spooled, DKIM-signed when
        `sign` (blocking: in the durable pool)."""
        return sign_hook(self.services, entry.mail_from, data) if sign else data

    def _loaded(self, results: list, started: list) -> None:
        for (act, jobs), result in zip(started, results, strict=True):
            entry = act.entry
            if isinstance(result, Exception):
                # Usually an entry finished and removed while a re-scan was listing the spool.
                if self.queue.exists(entry.id):
                    log.warn(
                        "relay: {id}: message file unreadable: {e}", id=entry.id, e=visible(result)
                    )
                self.active.pop(entry.id, None)
                self.entries.pop(entry.id, None)
                continue
            act.data = result
            for job in jobs:
                self.senders.push(job)
        self.senders.spawn()

    def _job_done(self, job: Job, outcomes: list[RecipientOutcome]) -> None:
        act = self.active.get(job.entry_id)
        if act is None:
            return
        now = time.time()
        by_addr = {o.address: o for o in outcomes}
        # RFC 5321 §4.5.3.1.10: "452 too many recipients" after some were taken means "send
        # the others in another transaction", now rather than at the next retry.
        progress = any(o.result == "delivered" for o in outcomes)
        more = [
            r
            for r in job.recipients
            if progress
            and (o := by_addr.get(r.address)) is not None
            and o.result == "temporary"
            and o.diagnostic.startswith("452")
        ]
        if more:
            act.outstanding += 1
            self.senders.push(Job(job.entry_id, job.dest_key, job.domain, more))
            self.senders.spawn()
        for r in job.recipients:
            o = by_addr.get(r.address)
            if o is None or any(r is m for m in more):
                continue
            r.status, r.diagnostic, r.remote_mta, r.updated = (
                o.status,
                o.diagnostic,
                o.remote_mta,
                now,
            )
            self.services.metrics.relay_attempt(o.result)
            if o.result == "delivered":
                r.state = DELIVERED
            elif o.result == "permanent":
                r.state = FAILED
            else:
                act.entry.last_error = f"{o.status} {o.diagnostic}".strip()
            log.info(
                "relay: {id}: to=<{to}> relay={mta} status={res} ({diag})",
                id=job.entry_id,
                to=visible(r.address),
                mta=visible(o.remote_mta or "none"),
                res={"delivered": "sent", "permanent": "bounced", "temporary": "deferred"}[
                    o.result
                ],
                diag=visible(o.diagnostic or o.status),
            )
        act.outstanding -= 1
        if act.outstanding <= 0:
            self._finish(act)

    # -- bookkeeping and notices --------------------------------------------------------

    def _finish(self, act: Active) -> None:
        """An entry's attempt is over: what it owes, then removed or saved for its next
        attempt.  The usual end, delivered with no notice owed, takes no coroutine: only the
        batch removal (_remove)."""
        entry = act.entry
        now = time.time()
        try:
            owed = self._owed(act, now)
            if not owed:
                self._notified(entry, set())
                if entry.finished:
                    self._remove(entry.id)
                    return
            d = defer.Deferred.fromCoroutine(self._finish_async(act, owed, now))
        except Exception:
            d = defer.fail()
        d.addErrback(self._finish_failed, entry)
        d.addCallback(lambda removing: removing or self._settled(entry.id))

    def _finish_failed(self, f, entry: QueueEntry) -> None:
        # Never leave an entry behind in memory only: try it again later.
        log.failure("relay: {id}: bookkeeping failed", f, id=entry.id)
        entry.next_attempt = time.time() + retry_delay(self.relay.retry_schedule, 1)
        self._push(entry)

    def _owed(self, act: Active, now: float) -> list[list]:
        """Counts the attempt, fails what has waited too long, and returns the notices the
        entry owes now (Notices.owed)."""
        entry = act.entry
        if act.attempted:
            entry.attempts += 1
        if entry.pending and now - entry.created >= self.relay.max_age:
            # RFC 3464 Action failed after the retry period (Status keeps the last cause).
            for r in entry.pending:
                r.state = FAILED
                r.status = r.status or "4.4.7"
                r.diagnostic = (r.diagnostic + "; " if r.diagnostic else "") + (
                    "delivery time expired"
                )
                r.updated = now
        return self.notices.owed(entry, act.dsn_passed, now)

    def _notified(self, entry: QueueEntry, unsent: set[int]) -> None:
        """Every final state has had its notice, except the recipients in `unsent`."""
        for r in entry.recipients:
            if r.state != PENDING and id(r) not in unsent:
                r.dsn_sent = True

    def _settled(self, qid: str) -> None:
        self.active.pop(qid, None)
        # A backlog held back by MAX_ACTIVE is taken up a read batch at a time, not one entry
        # (one trip to the durable pool) for every entry that settles.
        if (
            self.ready
            and len(self.active) <= MAX_ACTIVE - READ_BATCH
            and self.heap
            and self.heap[0][0] <= time.time()
        ):
            self._run_due()

    async def _finish_async(self, act: Active, owed: list[list], now: float) -> bool:
        """The rest of _finish, for an entry that owes notices or stays queued: True when its
        removal settles it (_removed)."""
        entry = act.entry
        if owed:
            unsent = await self.notices.send_all(entry, owed)
            if unsent and now - entry.created >= self.relay.max_age:
                # A notice that could not be handed on for the whole retry period is given up.
                log.error("relay: {id}: giving up on an undeliverable notice", id=entry.id)
                unsent.clear()
            self._notified(entry, unsent)
            if entry.finished:
                self._remove(entry.id)
                return True
        if act.attempted or not entry.pending:
            entry.next_attempt = now + retry_delay(self.relay.retry_schedule, entry.attempts)
        saved = await self.io.submit(self.queue.save, entry)
        if saved != "saved":
            # Deleted or changed by `mailsuite queue` meanwhile: the disk wins.
            self.entries.pop(entry.id, None)
            if saved == "stale":
                self.active.pop(entry.id, None)
                self.rescan()
            return False
        self._push(entry)
        return False

    def _remove(self, qid: str) -> None:
        """Finished entries are removed in batches: one lock and one trip to the durable pool
        for all that finished within REMOVE_DELAY or while the previous batch was removed.
        Each is settled (_removed) once its batch is done."""
        self.to_remove.append(qid)
        if not self.removing:
            self.removing = True
            self.remove_timer = self.reactor.callLater(REMOVE_DELAY, self._remove_batch)

    def _remove_batch(self) -> None:
        self.remove_timer = None
        batch, self.to_remove = self.to_remove, []
        if not batch:
            self.removing = False
            return
        self.removing = True

        def done(result):
            for qid in batch:
                self._removed(qid)
            self._remove_batch()

        def failed(f):
            log.failure("relay: removing finished entries failed", f)
            done(None)

        defer.maybeDeferred(self.io.submit, self.queue.remove_many, batch).addCallbacks(
            done, failed
        )

    def _removed(self, qid: str) -> None:
        self.entries.pop(qid, None)
        self._settled(qid)

    # -- for tests and the admin command -------------------------------------------------


def build_service(services, deliver_notice=None) -> service.IService:
    """The queue runner for app.py's MultiService.  `deliver_notice(recipient, data, helo)`
    -> Deferred[bool] stores a notice for a local sender (Delivery.deliver_notice); without it
    every notice is queued."""
    return QueueRunner(services, deliver_notice)
