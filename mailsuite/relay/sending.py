"""Sending jobs to their destinations: a bounded number of SMTP client workers per destination
(a domain, or the smarthost) and in total, each reusing its connection for the next job to the
same place (a small connection cache, as Postfix's smtp keeps).  The queue runner decides what
is due and what becomes of the outcomes; this module only moves messages."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.logtext import visible
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
from mailsuite.spool.queue import QueueEntry

log = Logger(namespace="mailsuite.relay.runner")

SMARTHOST = "[smarthost]"
# Seconds an idle connection waits for more mail to the same destination before QUIT.
LINGER = 2.0


@dataclass
class Job:
    """Recipients of one entry that go to one destination in one transaction."""

    entry_id: str
    dest_key: str
    domain: str
    recipients: list


@dataclass
class Active:
    """An entry being tried: its message, once read, and its jobs still out."""

    entry: QueueEntry
    data: bytes = b""
    outstanding: int = 0
    attempted: bool = False
    dsn_passed: set[str] = field(default_factory=set)


def as_failure(exc: Exception, dest_key: str) -> DeliveryFailure:
    """A DeliveryFailure as it is, anything else (a bug) as a temporary failure: mail is
    deferred, never bounced, because of our own error."""
    if isinstance(exc, DeliveryFailure):
        return exc
    log.failure("relay: unexpected error delivering to {d}", d=visible(dest_key))
    return DeliveryFailure("4.3.0", f"internal error: {exc!r}")


class Senders:
    """The SMTP client workers.  `active` is the runner's table of entries in flight (a job
    whose entry left it is skipped); `job_done(job, outcomes)` is told each job's result."""

    def __init__(
        self,
        config,
        reactor,
        active: dict[str, Active],
        job_done: Callable[[Job, list[RecipientOutcome]], None],
    ):
        self.config = config
        self.relay = config.relay
        self.reactor = reactor
        self.resolver = MxResolver(config, reactor=reactor)
        self.active = active
        self.job_done = job_done
        self.jobs: dict[str, deque[Job]] = defaultdict(deque)
        self.workers: dict[str, int] = defaultdict(int)
        # Idle connections waiting for more mail to their destination, oldest first: (the
        # end of their wait, reactor.seconds(); the Deferred that wakes them: True for a job).
        self.lingering: dict[str, deque[tuple[float, defer.Deferred]]] = {}
        # One timer ends the waits that are over (_end_lingering), instead of one per wait.
        self.linger_timer = None
        self.total_workers = 0
        self.connections: set[SmtpConnection] = set()
        self.running = False

    def busy(self) -> bool:
        """Jobs are waiting for a worker."""
        return any(self.jobs.values())

    def abort(self) -> None:
        """Drop every connection (at stop: the entries are still on disk)."""
        self.running = False
        for conn in list(self.connections):
            conn.abort()

    def push(self, job: Job) -> None:
        self.jobs[job.dest_key].append(job)
        waiters = self.lingering.get(job.dest_key)
        if waiters:
            waiters.popleft()[1].callback(True)

    def spawn(self) -> None:
        """Start workers for waiting jobs, within the per-destination and total limits."""
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
                for other, waiters in list(self.lingering.items()):
                    while other != key and waiters:
                        waiters.popleft()[1].callback(False)
            if not jobs and not self.workers[key]:
                del self.jobs[key]

    def job_failed(self, job: Job, failure: DeliveryFailure) -> None:
        kind = "permanent" if failure.permanent else "temporary"
        diag = failure.diagnostic or failure.text
        outcomes = [
            RecipientOutcome(r.address, kind, failure.status, diag, failure.remote_mta)
            for r in job.recipients
        ]
        self.job_done(job, outcomes)

    async def _next_job(self, dest_key: str, conn: SmtpConnection | None) -> Job | None:
        """The next job for this destination; with an open connection wait up to
        LINGER seconds for one."""
        queue = self.jobs[dest_key]
        if queue:
            return queue.popleft()
        if conn is None or not conn.usable or not self.running:
            return None
        d: defer.Deferred = defer.Deferred()
        self.lingering.setdefault(dest_key, deque()).append((self.reactor.seconds() + LINGER, d))
        if self.linger_timer is None:
            self.linger_timer = self.reactor.callLater(LINGER, self._end_lingering)
        got = await d
        queue = self.jobs[dest_key]
        if got and queue:
            return queue.popleft()
        return None

    def _end_lingering(self) -> None:
        """Wake (with False) the idle connections whose LINGER is over; then wait for the
        next wait to end."""
        self.linger_timer = None
        now = self.reactor.seconds()
        soonest = None
        for waiters in list(self.lingering.values()):
            while waiters and waiters[0][0] <= now:
                waiters.popleft()[1].callback(False)
            if waiters and (soonest is None or waiters[0][0] < soonest):
                soonest = waiters[0][0]
        if soonest is None:
            return
        timer = self.linger_timer  # set again by a wait that a wake-up above started
        if timer is None:
            self.linger_timer = self.reactor.callLater(soonest - now, self._end_lingering)
        elif timer.getTime() > soonest:
            timer.reset(soonest - now)

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
                log.info(
                    "relay: TLS with {h} failed ({e}); retrying without",
                    h=visible(dest.host),
                    e=visible(e),
                )
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
                        f = as_failure(exc, dest_key)
                        # The destination is unusable now: every job waiting for it shares the
                        # failure instead of each trying again (Postfix's "dead destination").
                        queue = self.jobs[dest_key]
                        waiting = [job, *queue]
                        queue.clear()
                        for j in waiting:
                            self.job_failed(j, f)
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
                    self.job_failed(job, as_failure(exc, dest_key))
                    self.connections.discard(conn)
                    conn.abort()
                    conn = None
                    continue
                if "DSN" in conn.ext:
                    act.dsn_passed.update(r.address for r in job.recipients)
                self.job_done(job, outcomes)
        except Exception:
            log.failure("relay: worker for {d} crashed", d=visible(dest_key))
        finally:
            # The slot is freed only once the connection is closed, so the limits hold at
            # the remote end too.
            if conn is not None:
                self.connections.discard(conn)
                await conn.quit()
            self.workers[dest_key] -= 1
            self.total_workers -= 1
            self.spawn()
