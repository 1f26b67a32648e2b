"""The queue runner: decides when each queued message is tried, where, and what the sender hears.

Like Postfix's qmgr, it keeps only a cache of the spool in memory, rebuilt from disk at start
(so a kill -9 loses nothing: anything not finished is still on disk and is tried again).  Due
entries are split into one job per destination (a domain, or the smarthost); a bounded number
of workers per destination, and in total, take jobs and reuse their connection for the next
job to the same place.  When every job of an entry is done, the entry is updated on disk,
notices are sent (bounce.py), and it is removed once nothing is left to do.

`mailsuite queue flush` reaches a running server by touching ``<queue>/flush.trigger``
(polled every ``relay.scan_interval``) or by SIGUSR1; both make the runner re-read the spool.
"""

from __future__ import annotations

import heapq
import signal
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.python.threadable import isInIOThread
from twisted.python.threadpool import ThreadPool

from mailsuite.relay.client import (
    RecipientOutcome,
    SessionParams,
    SmtpConnection,
    Timeouts,
    TlsHandshakeFailed,
    connect,
)
from mailsuite.relay.mx import Destination, MxResolver
from mailsuite.relay.reply import DeliveryFailure
from mailsuite.spool import bounce
from mailsuite.spool.queue import DELIVERED, FAILED, PENDING, Queue, QueueEntry, QueueError
from mailsuite.trust import dkim

log = Logger()

SMARTHOST = "[smarthost]"
# Full directory re-reads (for entries written by other processes) every this many ticks.
RESCAN_TICKS = 30
# Messages enqueued in this process up to this size are handed to the runner in memory.
PRELOAD_MAX = 256 * 1024
RELAY_THREADS = 8
# Messages read from disk in one trip to the relay's threads (see QueueRunner._read).
READ_BATCH = 32
MAX_ACTIVE = 1000
MAX_RCPTS_PER_TRANSACTION = 100
# Seconds an idle connection waits for more mail to the same destination before QUIT.
LINGER = 2.0
# Finished entries are removed this long after the first of a batch finished: each removal is
# an io_uring chain (a submission, a kernel worker woken, a completion to read), and at full
# load one chain for every few messages instead of one for each saves about 5 % of the
# reactor's time per relayed message (measured with bench/relay.py).
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


@dataclass
class _Job:
    entry_id: str
    dest_key: str
    domain: str
    recipients: list


@dataclass
class _Active:
    entry: QueueEntry
    data: bytes = b""
    outstanding: int = 0
    attempted: bool = False
    dsn_passed: set[str] = field(default_factory=set)


def _as_failure(exc: Exception, dest_key: str) -> DeliveryFailure:
    """A DeliveryFailure as it is, anything else (a bug) as a temporary failure: mail is
    deferred, never bounced, because of our own error."""
    if isinstance(exc, DeliveryFailure):
        return exc
    log.failure("relay: unexpected error delivering to {d}", d=dest_key)
    return DeliveryFailure("4.3.0", f"internal error: {exc!r}")


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
        # Local delivery of notices, given at wiring (Delivery.deliver_notice): the relay sits
        # above delivery's callers but never imports delivery.
        self.deliver_notice = deliver_notice
        self.config = services.config
        self.relay = services.config.relay
        self.queue: Queue = getattr(services, "queue", None) or Queue(services.config.queue_dir)
        self.resolver = MxResolver(self.config, reactor=reactor)
        self.entries: dict[str, QueueEntry] = {}
        self.heap: list[tuple[float, str]] = []
        self.active: dict[str, _Active] = {}
        self.jobs: dict[str, deque[_Job]] = defaultdict(deque)
        self.workers: dict[str, int] = defaultdict(int)
        self.lingering: dict[str, deque[defer.Deferred]] = {}
        self.total_workers = 0
        self.connections: set[SmtpConnection] = set()
        self.loop: task.LoopingCall | None = None
        self.ticks = 0
        self.ready = False
        self.scanning = False
        self._idle_waiters: list[defer.Deferred] = []
        self.preloaded: dict[str, bytes] = {}
        self.to_remove: list[tuple[str, defer.Deferred]] = []
        self.removing = False
        self.remove_timer = None
        self.pool = ThreadPool(minthreads=0, maxthreads=RELAY_THREADS, name="relay")
        self.signing_possible = SigningProbe(services)

    # -- lifecycle ----------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.pool.start()
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
        # In-flight work is still on disk; it is tried again at the next start.
        for conn in list(self.connections):
            conn.abort()
        if self.remove_timer is not None and self.remove_timer.active():
            # Delivered entries waiting for their batch: removed now, or sent again after a
            # restart.
            self.remove_timer.cancel()
            batch, self.to_remove = self.to_remove, []
            try:
                self.queue.remove_many([qid for qid, _ in batch])
            except OSError as e:
                log.error("relay: removing finished entries failed: {e}", e=e)
        self.pool.stop()

    # -- learning about entries ---------------------------------------------------------

    def _enqueued(self, entry: QueueEntry, data: bytes) -> None:
        """The queue's listener, called on whichever thread enqueued.  From the reactor's own
        thread (every SMTP delivery) the entry is taken up at the next turn, after the reply
        to the client is written; callFromThread there would cost a wake-up of the reactor
        through its waker pipe for every message."""
        if isInIOThread():
            self.reactor.callLater(0, self._add, entry, data)
        else:
            self.reactor.callFromThread(self._add, entry, data)

    def _add(self, entry: QueueEntry, data: bytes | None = None) -> None:
        if entry.id in self.active:
            return
        self.entries[entry.id] = entry
        if data is not None and len(data) <= PRELOAD_MAX and entry.next_attempt <= time.time():
            # Enqueued by this process just now: no need to read it back from disk.
            self.preloaded[entry.id] = data
        heapq.heappush(self.heap, (entry.next_attempt, entry.id))
        if self.ready:
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

        return self._in_pool(read).addCallbacks(got, failed)

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

        d = self._in_pool(read)
        d.addCallback(lambda entries: [self._add(e) for e in entries if e.id not in self.entries])
        d.addErrback(lambda f: log.failure("relay: scanning the queue failed", f))
        return d

    def _tick(self) -> None:
        self.ticks += 1
        if self.queue.take_trigger():
            log.info("relay: flush requested; re-reading the queue")
            self.rescan().addCallback(lambda _: self._run_due())
        elif self.queue.take_new_trigger() or self.ticks % RESCAN_TICKS == 0:
            self._new_ids()
        self._run_due()

    # -- scheduling ---------------------------------------------------------------------

    def _run_due(self) -> None:
        now = time.time()
        # A bounded number of entries in flight (Postfix's qmgr_message_active_limit): after an
        # outage the whole backlog is due at once and must not be read into memory at once.
        to_read: list[tuple[_Active, list[_Job], bytes | None]] = []
        while self.heap and self.heap[0][0] <= now and len(self.active) < MAX_ACTIVE:
            when, qid = heapq.heappop(self.heap)
            entry = self.entries.get(qid)
            if entry is None or qid in self.active or entry.next_attempt != when:
                continue  # stale heap item
            started = self._start(entry)
            if started is not None:
                to_read.append(started)
        for i in range(0, len(to_read), READ_BATCH):
            self._read_in_pool(to_read[i : i + READ_BATCH])
        self._spawn_workers()

    def _start(self, entry: QueueEntry) -> tuple[_Active, list[_Job], bytes | None] | None:
        """Make the entry's jobs.  Without signing to do, they are queued at once when the
        message is in memory, or once the kernel has read a small one; otherwise the entry is
        returned, to have its message read (and signed) in a thread."""
        act = _Active(entry)
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
            _Job(entry.id, key, domain, rcpts[i : i + n])
            for (key, domain), rcpts in groups.items()
            for i in range(0, len(rcpts), n)
        ]
        act.outstanding = len(jobs)
        act.attempted = True

        preloaded = self.preloaded.pop(entry.id, None)
        if not self.signing_possible():
            if preloaded is not None:
                act.data = preloaded
                for job in jobs:
                    self._push_job(job)
                return None
            if entry.size <= PRELOAD_MAX:
                self._read_small(act, jobs)
                return None
        return act, jobs, preloaded

    def _read_small(self, act: _Active, jobs: list[_Job]) -> None:
        """A small message with nothing to sign, read by the kernel (Queue.read_message_async):
        no thread hand-over and no contention for the GIL, which a backlog read in the pool
        costs the reactor at every system call (measured with bench/relay.py --drain)."""
        started = [(act, jobs, None)]

        d = self.queue.read_message_async(act.entry.id)
        d.addCallbacks(
            lambda data: self._loaded([data], started), lambda f: self._loaded([f.value], started)
        )

    def _read_in_pool(self, started: list[tuple[_Active, list[_Job], bytes | None]]) -> None:
        self._in_pool(self._read, started).addCallbacks(
            self._loaded,
            lambda f: self._loaded([f.value] * len(started), started),
            callbackArgs=(started,),
        )

    def _read(self, started: list[tuple[_Active, list[_Job], bytes | None]]) -> list:
        """In a thread: the messages of entries just started, read and signed, or the error
        each gave.  One trip to the pool for a batch (after an outage the whole backlog is
        due at once): each trip costs the reactor a hand-over, and every worker thread that
        reads at the same time contends with it for the GIL at each system call."""
        out: list = []
        for act, _, preloaded in started:
            try:
                data = self.queue.read_message(act.entry.id) if preloaded is None else preloaded
                out.append(sign_hook(self.services, act.entry.mail_from, data))
            except Exception as e:
                out.append(e)
        return out

    def _loaded(self, results: list, started: list) -> None:
        for (act, jobs, _), result in zip(started, results, strict=True):
            entry = act.entry
            if isinstance(result, Exception):
                # Usually an entry finished and removed while a re-scan was listing the spool.
                if self.queue.exists(entry.id):
                    log.warn("relay: {id}: message file unreadable: {e}", id=entry.id, e=result)
                self.active.pop(entry.id, None)
                self.entries.pop(entry.id, None)
                continue
            act.data = result
            for job in jobs:
                self._push_job(job)
        self._spawn_workers()

    def _push_job(self, job: _Job) -> None:
        self.jobs[job.dest_key].append(job)
        waiters = self.lingering.get(job.dest_key)
        if waiters:
            waiters.popleft().callback(True)

    def _spawn_workers(self) -> None:
        limit_total = max(1, self.relay.connections_total)
        for key, jobs in list(self.jobs.items()):
            while (
                jobs
                and self.workers[key] < max(1, self.relay.connections_per_destination)
                and self.total_workers < limit_total
                and self.workers[key] < len(jobs)
            ):
                self.workers[key] += 1
                self.total_workers += 1
                defer.Deferred.fromCoroutine(self._worker(key))
            if jobs and self.total_workers >= limit_total:
                # Idle cached connections to other places make way for waiting work.
                for other, waiters in self.lingering.items():
                    while other != key and waiters:
                        waiters.popleft().callback(False)
            if not jobs and not self.workers[key]:
                del self.jobs[key]

    async def _next_job(self, dest_key: str, conn: SmtpConnection | None) -> _Job | None:
        """The next job for this destination; with an open connection wait up to
        LINGER seconds for one (a small connection cache, as Postfix's smtp keeps)."""
        queue = self.jobs[dest_key]
        if queue:
            return queue.popleft()
        if conn is None or not conn.usable or not self.running:
            return None
        d: defer.Deferred = defer.Deferred()
        waiters = self.lingering.setdefault(dest_key, deque())
        waiters.append(d)
        timer = self.reactor.callLater(LINGER, lambda: d.called or d.callback(False))
        got = await d
        if timer.active():
            timer.cancel()
        if d in waiters:
            waiters.remove(d)
        queue = self.jobs[dest_key]
        if got and queue:
            return queue.popleft()
        return None

    # -- delivery -----------------------------------------------------------------------

    def _params(self, dest_key: str) -> SessionParams:
        timeouts = Timeouts.from_config(self.relay)
        if dest_key == SMARTHOST:
            sh = self.relay.smarthost
            mode = {"starttls": "required", "implicit": "implicit", "none": "none"}[
                sh.get("tls", "starttls")
            ]
            return SessionParams(
                self.config.hostname,
                mode,
                timeouts,
                sh.get("username"),
                sh.get("password"),
                verify=sh.get("tls_verify", False),
                ca_file=sh.get("ca_file"),
            )
        required = {d.lower() for d in self.relay.require_tls}
        mode = "required" if dest_key in required else "opportunistic"
        return SessionParams(self.config.hostname, mode, timeouts)

    async def _destinations(self, dest_key: str) -> list[Destination]:
        if dest_key == SMARTHOST:
            sh = self.relay.smarthost
            default = 465 if sh.get("tls") == "implicit" else 587
            return await self.resolver.host_destinations(sh["host"], int(sh.get("port", default)))
        return await self.resolver.destinations(dest_key)

    async def _open(self, dest_key: str) -> SmtpConnection:
        """Try each destination in order (RFC 5321 §5.1); the last failure if none works."""
        dests = await self._destinations(dest_key)
        params = self._params(dest_key)
        failures: list[DeliveryFailure] = []
        for dest in dests:
            try:
                return await connect(dest, params, self.reactor)
            except TlsHandshakeFailed as e:
                if params.tls != "opportunistic":
                    failures.append(e)
                    continue
                # Opportunistic TLS that breaks: try the same host in the clear (as Postfix).
                log.info("relay: TLS with {h} failed ({e}); retrying without", h=dest.host, e=e)
                try:
                    plain = SessionParams(params.helo, "none", params.timeouts)
                    return await connect(dest, plain, self.reactor)
                except DeliveryFailure as e2:
                    failures.append(e2)
            except DeliveryFailure as e:
                failures.append(e)
        temporary = [f for f in failures if not f.permanent]
        raise (temporary or failures)[-1]

    async def _worker(self, dest_key: str) -> None:
        conn: SmtpConnection | None = None
        try:
            while self.running:
                job = await self._next_job(dest_key, conn)
                if job is None:
                    break
                if conn is None or not conn.usable:
                    try:
                        conn = await self._open(dest_key)
                        self.connections.add(conn)
                    except Exception as exc:
                        f = _as_failure(exc, dest_key)
                        # The destination is unusable now: every job waiting for it shares the
                        # failure instead of each trying again (Postfix's "dead destination").
                        queue = self.jobs[dest_key]
                        waiting = [job, *queue]
                        queue.clear()
                        for j in waiting:
                            self._job_failed(j, f)
                        break
                act = self.active.get(job.entry_id)
                if act is None:
                    continue
                e = act.entry
                try:
                    outcomes = await conn.send_message(
                        e.mail_from, job.recipients, act.data, e.dsn_ret, e.dsn_envid
                    )
                except Exception as exc:
                    self._job_failed(job, _as_failure(exc, dest_key))
                    self.connections.discard(conn)
                    conn.abort()
                    conn = None
                    continue
                if "DSN" in conn.ext:
                    act.dsn_passed.update(r.address for r in job.recipients)
                self._job_done(job, outcomes)
        except Exception:
            log.failure("relay: worker for {d} crashed", d=dest_key)
        finally:
            # The slot is freed only once the connection is closed, so the limits hold at
            # the remote end too.
            if conn is not None:
                self.connections.discard(conn)
                await conn.quit()
            self.workers[dest_key] -= 1
            self.total_workers -= 1
            self._spawn_workers()

    def _job_failed(self, job: _Job, failure: DeliveryFailure) -> None:
        kind = "permanent" if failure.permanent else "temporary"
        diag = failure.diagnostic or failure.text
        outcomes = [
            RecipientOutcome(r.address, kind, failure.status, diag, failure.remote_mta)
            for r in job.recipients
        ]
        self._job_done(job, outcomes)

    def _job_done(self, job: _Job, outcomes: list[RecipientOutcome]) -> None:
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
            self._push_job(_Job(job.entry_id, job.dest_key, job.domain, more))
            self._spawn_workers()
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
            if o.result == "delivered":
                r.state = DELIVERED
            elif o.result == "permanent":
                r.state = FAILED
            else:
                act.entry.last_error = f"{o.status} {o.diagnostic}".strip()
            log.info(
                "relay: {id}: to=<{to}> relay={mta} status={res} ({diag})",
                id=job.entry_id,
                to=r.address,
                mta=o.remote_mta or "none",
                res={"delivered": "sent", "permanent": "bounced", "temporary": "deferred"}[
                    o.result
                ],
                diag=o.diagnostic or o.status,
            )
        act.outstanding -= 1
        if act.outstanding <= 0:
            self._finish(act)

    # -- bookkeeping and notices --------------------------------------------------------

    def _finish(self, act: _Active) -> None:
        def failed(f) -> None:
            # Never leave an entry behind in memory only: try it again later.
            log.failure("relay: {id}: bookkeeping failed", f, id=act.entry.id)
            act.entry.next_attempt = time.time() + retry_delay(self.relay.retry_schedule, 1)
            heapq.heappush(self.heap, (act.entry.next_attempt, act.entry.id))

        defer.Deferred.fromCoroutine(self._finish_async(act)).addErrback(failed).addBoth(
            lambda _: self._settled(act.entry.id)
        )

    def _settled(self, qid: str) -> None:
        self.active.pop(qid, None)
        if self.ready and self.heap and self.heap[0][0] <= time.time():
            self._run_due()
        if not self.active and not any(self.jobs.values()):
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    async def _finish_async(self, act: _Active) -> None:
        entry = act.entry
        now = time.time()
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
                    and r.address not in act.dsn_passed
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
        unsent: set[int] = set()
        for reports in (failed, succeeded, delayed):
            if reports:
                try:
                    await self._send_notice(entry, reports)
                except Exception as e:
                    # Kept owed: the entry stays and the notice is tried again later.
                    log.error("relay: {id}: notice not sent: {e!r}", id=entry.id, e=e)
                    unsent.update(id(rep.recipient) for rep in reports)
                    if reports is delayed:
                        entry.delay_warned = False
        expired = now - entry.created >= self.relay.max_age
        if unsent and expired:
            # A notice that could not be handed on for the whole retry period is given up.
            log.error("relay: {id}: giving up on an undeliverable notice", id=entry.id)
            unsent.clear()
        for r in entry.recipients:
            if r.state != PENDING and id(r) not in unsent:
                r.dsn_sent = True
        if entry.finished:
            await self._remove(entry.id)
            self.entries.pop(entry.id, None)
            return
        if act.attempted or not entry.pending:
            entry.next_attempt = now + retry_delay(self.relay.retry_schedule, entry.attempts)
        saved = await self._in_pool(self.queue.save, entry)
        if saved != "saved":
            # Deleted or changed by `mailsuite queue` meanwhile: the disk wins.
            self.entries.pop(entry.id, None)
            if saved == "stale":
                self.active.pop(entry.id, None)
                self.rescan()
            return
        heapq.heappush(self.heap, (entry.next_attempt, entry.id))

    async def _send_notice(self, entry: QueueEntry, reports: list[bounce.Report]) -> None:
        """Compose the DSN and hand it on: local senders through delivery, others queued."""

        def compose() -> bytes:
            try:
                original = self.queue.read_message(entry.id)
            except QueueError:
                original = b""
            return bounce.compose_dsn(
                entry, reports, original, self.config.hostname, max_age=self.relay.max_age
            )

        data = await self._in_pool(compose)
        sender = entry.mail_from
        kinds = ",".join(sorted({r.action for r in reports}))
        if await self._deliver_locally(sender, data):
            log.info(
                "relay: {id}: {k} notice delivered to local <{s}>", id=entry.id, k=kinds, s=sender
            )
            return
        qid = await self._in_pool(lambda: self.queue.enqueue("", [sender], data, is_bounce=True))
        log.info(
            "relay: {id}: {k} notice to <{s}> queued as {q}", id=entry.id, k=kinds, s=sender, q=qid
        )

    async def _deliver_locally(self, sender: str, data: bytes) -> bool:
        """True once the notice is in a local mailbox (or dropped there, RFC 3461 §6.2);
        False if the sender is not local or there is no local delivery."""
        if self.deliver_notice is None:
            return False
        delivered = await self.deliver_notice(sender, data, self.config.hostname)
        return delivered is not False

    # -- threads -------------------------------------------------------------------------

    def _in_pool(self, fn, *args) -> defer.Deferred:
        """Disk work on the relay's own threads, so a busy relay never starves the SMTP
        server's deliveries of the reactor's pool (and the reverse)."""
        return threads.deferToThreadPool(self.reactor, self.pool, fn, *args)

    def _remove(self, qid: str) -> defer.Deferred:
        """Finished entries are removed in batches: one lock and one io_uring chain for all
        that finished within REMOVE_DELAY or while the previous batch was being removed."""
        d: defer.Deferred = defer.Deferred()
        self.to_remove.append((qid, d))
        if not self.removing:
            self.removing = True
            self.remove_timer = self.reactor.callLater(REMOVE_DELAY, self._remove_batch)
        return d

    def _remove_batch(self) -> None:
        self.remove_timer = None
        batch, self.to_remove = self.to_remove, []
        if not batch:
            self.removing = False
            return
        self.removing = True

        def done(result):
            for _, d in batch:
                d.callback(None)
            self._remove_batch()

        def failed(f):
            log.failure("relay: removing finished entries failed", f)
            done(None)

        ids = [q for q, _ in batch]
        defer.maybeDeferred(self.queue.remove_many_async, ids).addCallbacks(done, failed)

    # -- for tests and the admin command -------------------------------------------------

    def when_idle(self) -> defer.Deferred:
        """Fires when nothing is in flight (tests wait on it)."""
        if not self.active and not any(self.jobs.values()):
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle_waiters.append(d)
        return d


def build_service(services, deliver_notice=None) -> service.IService:
    """The queue runner for app.py's MultiService.  `deliver_notice(recipient, data, helo)`
    -> Deferred[bool] stores a notice for a local sender (Delivery.deliver_notice); without it
    every notice is queued."""
    return QueueRunner(services, deliver_notice)
