"""The metric objects and the one-line calls that count events.

Each server has its own `CollectorRegistry` (two servers in one process, as in the tests, never
add to each other's figures). A counting call is a dictionary lookup and an increment: the
label children are made once and kept. Values that are cheaper to read when scraped than to
keep up to date (queue length, certificate expiry) are `probe`s: functions called at scrape
time, in the web server's thread, never on the reactor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

# Listener kinds whose connections are TLS from the first byte.
IMPLICIT_TLS = frozenset({"submissions", "pop3s", "imaps", "https"})

# Delivery latency: an fsynced local copy takes milliseconds; a second is a sick disk.
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# IMAP commands: NOOP answers in microseconds, a SEARCH of a large folder in seconds.
COMMAND_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0)

# Distinct IMAP command labels before further names are counted as "other".
MAX_COMMAND_LABELS = 80

# Why a message was refused after its content arrived, from the exception that refused it.
REFUSAL_REASONS = {
    "QuotaExceeded": "quota",
    "TemporaryFailure": "temporary",
    "UnknownRecipient": "unknown_recipient",
    "SmtpReply": "policy",
}


class Metrics:
    """One server's metrics, exposed in Prometheus text format by the `metrics` listener."""

    enabled = True

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._connections = Counter(
            "mailsuite_connections",
            "Connections accepted, by listener kind and whether TLS came with the connection.",
            ["protocol", "tls"],
            registry=r,
        )
        self._open = Gauge(
            "mailsuite_sessions", "Sessions open now, by listener kind.", ["protocol"], registry=r
        )
        self._starttls = Counter(
            "mailsuite_starttls",
            "Sessions that turned TLS on in the session (STARTTLS, STLS), by listener kind.",
            ["protocol"],
            registry=r,
        )
        self._logins = Counter(
            "mailsuite_logins",
            'Password logins by mechanism ("command": IMAP LOGIN, POP3 USER/PASS) and result '
            "(ok, failed, throttled).",
            ["mechanism", "result"],
            registry=r,
        )
        self._received = Counter(
            "mailsuite_messages_received",
            "Messages accepted over SMTP (250 after the content), by listener kind.",
            ["protocol"],
            registry=r,
        )
        self._refused = Counter(
            "mailsuite_messages_refused",
            "Messages refused after their content arrived, by reason.",
            ["reason"],
            registry=r,
        )
        self._delivered = Counter(
            "mailsuite_messages_delivered",
            'Copies stored: "local" into a mailbox, "queued" for another server.',
            ["destination"],
            registry=r,
        )
        self._relay = Counter(
            "mailsuite_relay_attempts",
            "Outbound delivery attempts per recipient, by result (delivered, temporary, "
            "permanent).",
            ["result"],
            registry=r,
        )
        self._delivery_seconds = Histogram(
            "mailsuite_delivery_seconds",
            "Time from handing a message to delivery to every copy being on disk.",
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self._imap_seconds = Histogram(
            "mailsuite_imap_command_seconds",
            "IMAP command time, from running it to its tagged reply, by command.",
            ["command"],
            buckets=COMMAND_BUCKETS,
            registry=r,
        )
        self._listener_up = Gauge(
            "mailsuite_listener_up",
            "1 while the listener accepts connections, by kind and address.",
            ["kind", "address"],
            registry=r,
        )
        self._listeners: dict[tuple[str, str], bool] = {}
        self._imap_timers: dict[str, Histogram] = {}
        self._by_kind: dict[str, tuple] = {}
        self._local = self._delivered.labels("local")
        self._queued = self._delivered.labels("queued")
        # Series that alert rules divide or rate() exist from the start, at 0.
        for result in ("delivered", "temporary", "permanent"):
            self._relay.labels(result)
        for reason in (*REFUSAL_REASONS.values(), "error"):
            self._refused.labels(reason)

    # -- events, each called in one line where it happens --------------------------------------

    def connected(self, kind: str) -> None:
        children = self._by_kind.get(kind) or self._kind_children(kind)
        children[0].inc()
        children[1].inc()

    def disconnected(self, kind: str) -> None:
        (self._by_kind.get(kind) or self._kind_children(kind))[1].dec()

    def _kind_children(self, kind: str) -> tuple:
        """A listener kind's connection counter and session gauge, made once."""
        tls = "yes" if kind in IMPLICIT_TLS else "no"
        children = (self._connections.labels(kind, tls), self._open.labels(kind))
        self._by_kind[kind] = children
        return children

    def tls_started(self, kind: str) -> None:
        self._starttls.labels(kind).inc()

    def login(self, mechanism: str, result: str) -> None:
        self._logins.labels(mechanism, result).inc()

    def message_received(self, kind: str) -> None:
        self._received.labels(kind).inc()

    def message_refused(self, error: BaseException | None) -> None:
        self._refused.labels(REFUSAL_REASONS.get(type(error).__name__, "error")).inc()

    def delivered(self, local: int, queued: bool, started: float) -> None:
        """A delivery is on disk: `local` copies, a queue entry when `queued`, `started` its
        time.monotonic() at the start."""
        self._delivery_seconds.observe(time.monotonic() - started)
        if local:
            self._local.inc(local)
        if queued:
            self._queued.inc()

    def relay_attempt(self, result: str) -> None:
        self._relay.labels(result).inc()

    def imap_command(self, name: str, started: float) -> None:
        timer = self._imap_timers.get(name)
        if timer is None:
            # A label per command name the table knows; a client's made-up names share one.
            label = name if len(self._imap_timers) < MAX_COMMAND_LABELS else "other"
            timer = self._imap_timers[name] = self._imap_seconds.labels(label)
        timer.observe(time.monotonic() - started)

    def listening(self, kind: str, address: str, up: bool) -> None:
        self._listeners[(kind, address)] = up
        self._listener_up.labels(kind, address).set(1 if up else 0)

    def listeners_down(self) -> list[str]:
        """The listeners that were started and are not listening now ("kind address")."""
        return [f"{k} {a}" for (k, a), up in self._listeners.items() if not up]

    # -- values read when scraped ----------------------------------------------------------------

    def probe(self, read: Callable[[], Iterable[tuple[str, str, float | None]]]) -> None:
        """Gauges whose values `read()` gives at each scrape, as (name, help, value) triples
        (value None: no sample this time): one call may yield several figures from one look
        at the disk."""
        self.registry.register(_Probe(read))


class _Probe:
    """A custom collector for the gauges one probe reads at scrape time."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, float | None]]]):
        self._read = read

    def collect(self):
        families = []
        for name, documentation, value in self._read():
            family = GaugeMetricFamily(name, documentation)
            if value is not None:
                family.add_metric([], value)
            families.append(family)
        return families


class NoMetrics(Metrics):
    """Counting switched off (no `metrics` listener): every call returns at once."""

    enabled = False

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._listeners = {}

    def connected(self, kind: str) -> None:
        pass

    def disconnected(self, kind: str) -> None:
        pass

    def tls_started(self, kind: str) -> None:
        pass

    def login(self, mechanism: str, result: str) -> None:
        pass

    def message_received(self, kind: str) -> None:
        pass

    def message_refused(self, error: BaseException | None) -> None:
        pass

    def delivered(self, local: int, queued: bool, started: float) -> None:
        pass

    def relay_attempt(self, result: str) -> None:
        pass

    def imap_command(self, name: str, started: float) -> None:
        pass

    def listening(self, kind: str, address: str, up: bool) -> None:
        pass

    def probe(self, read: Callable[[], Iterable[tuple[str, str, float | None]]]) -> None:
        pass


# Holds nothing: shared by every server that counts nothing.
DISABLED = NoMetrics()
