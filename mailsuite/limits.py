"""Concurrent connection limits, in total and per client IP, shared by every listener.

Slots are what an attacker can exhaust without sending a byte: idle sockets held open from a
few addresses would fill a fixed total and lock everybody out.  So the total follows the
file-descriptor limit by default, each address keeps its own small limit, and when the total
is reached the limiter makes room by closing the connection that has not logged in and has
been quiet the longest (Postfix's postscreen does the same under stress).  A session that has
logged in (or, on SMTP, is sending a message) is never closed to make room.  Each adapter's
`AdmittedConnection` part holds its slot, its last activity and its absolute deadline.
"""

from __future__ import annotations

import resource
from collections import Counter
from typing import Protocol

from twisted.internet import reactor
from twisted.logger import Logger

log = Logger(namespace="mailsuite.limits")

# Why `admit` refused a connection; each protocol words it its own way.
PER_ADDRESS = "per-address"
SERVER_WIDE = "server-wide"

# Units of input (command lines, literal or message-data pieces, sub-dialogue steps) a session
# of any protocol handles for one connection in one call; then it yields and its adapter calls
# it again on a later reactor turn, so that one client pipelining thousands of commands never
# keeps the others waiting.
COMMANDS_PER_TURN = 32

# A command line that has passed its protocol's limit is skipped up to its end, then refused;
# past this many octets without an end the client is not sending commands any more (a stream
# of junk, a decompression bomb after COMPRESS): the session refuses it and closes, instead of
# reading it for as long as the client cares to send.  No client's real command comes near.
RUNAWAY_LINE = 1 << 20

# File descriptors kept back from connections when the total follows the limit: the listeners,
# the accounts database and its WAL, Maildir and spool files being read or written by the
# durable-I/O threads, the per-Maildir parse caches, the relay's outbound connections, logs.
RESERVED_FDS = 256
# A POP3 RETR streams its file while the socket is open, so a connection may hold two
# descriptors: at most this share of the limit goes to client sockets.
CONNECTION_SHARE = 0.5
# With a very high descriptor limit (systemd's hard limit is 524288) memory is the bound, not
# descriptors: the automatic total stops here.  An explicit `connections_total` may go higher.
AUTOMATIC_CEILING = 10000
# Under pressure, the candidates for eviction compared per admission, oldest admitted first,
# so that admitting stays cheap however many slots there are.  Established connections met on
# the way move to the back of the admission order and are not walked past again.
EVICTION_CANDIDATES = 32


class LimitedConnection(Protocol):
    """What the limiter asks of a connection it admitted (each protocol's adapter is one)."""

    def is_established(self) -> bool:
        """Logged in, or in the middle of something the client came for: never evicted."""

    def last_activity(self) -> float:
        """When the client last sent something (reactor time; the connect time before that)."""

    def evict(self) -> None:
        """Close now, telling the client that the server is full (the slot is already free)."""


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in force.

    Distributions start services with a soft limit of 1024 for the sake of select(); Twisted's
    reactor here is epoll (or poll), which has no such bound.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def fd_allowance() -> int:
    """How many client connections the current file-descriptor limit has room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return AUTOMATIC_CEILING
    return max(16, int((soft - RESERVED_FDS) * CONNECTION_SHARE))


class ConnectionLimiter:
    """The slots of every listener: `admit` when a connection arrives, `release` when it goes."""

    def __init__(self, total: int, per_ip: int):
        """`total` 0 follows the file-descriptor limit; a larger total than the limit allows
        is lowered to it (with a warning), since past it accept() would fail for everyone."""
        room = fd_allowance()
        if total <= 0:
            total = min(room, AUTOMATIC_CEILING)
        elif total > room:
            log.warn(
                "limits.connections_total = {total} exceeds what the file-descriptor limit "
                "allows; using {room}",
                total=total,
                room=room,
            )
            total = room
        self.total = total
        self.per_ip = per_ip
        self.evicted = 0  # connections closed to make room
        self._by_ip: Counter[str] = Counter()
        self._open: dict[LimitedConnection, str] = {}

    def admit(self, conn: LimitedConnection, ip: str) -> str | None:
        """Take a slot for `conn`; None if admitted, else PER_ADDRESS or SERVER_WIDE.

        At the total, the oldest quiet connection that has not logged in is closed to make
        room; only when every slot is held by established sessions is the newcomer refused.
        """
        if self._by_ip[ip] >= self.per_ip:
            return PER_ADDRESS
        if len(self._open) >= self.total and not self._make_room():
            return SERVER_WIDE
        self._open[conn] = ip
        self._by_ip[ip] += 1
        return None

    def release(self, conn: LimitedConnection) -> None:
        """Give back `conn`'s slot (again after an eviction: then it does nothing)."""
        ip = self._open.pop(conn, None)
        if ip is None:
            return
        self._by_ip[ip] -= 1
        if not self._by_ip[ip]:
            del self._by_ip[ip]

    def _make_room(self) -> bool:
        """Evict the quietest of the oldest-admitted connections that have not logged in.

        Established connections met on the way go to the back of the admission order, so the
        next scan does not walk past them again.
        """
        victim = None
        oldest = 0.0
        candidates = 0
        settled = []
        for conn in self._open:
            if conn.is_established():
                settled.append(conn)
                continue
            when = conn.last_activity()
            if victim is None or when < oldest:
                victim, oldest = conn, when
            candidates += 1
            if candidates >= EVICTION_CANDIDATES:
                break
        for conn in settled:
            self._open[conn] = self._open.pop(conn)
        if victim is None:
            return False
        ip = self._open[victim]
        self.release(victim)
        self.evicted += 1
        log.info("connection limit reached: closing an idle connection from {ip}", ip=ip)
        victim.evict()
        return True

    @property
    def active(self) -> int:
        return len(self._open)


class AdmittedConnection:
    """Mixin for the protocol adapters: the connection's slot, its last activity, its idle
    timeout and its absolute deadline.

    The adapter adds `is_established()` and `evict()` (the words are the protocol's) and so
    becomes the `LimitedConnection` the limiter asks when it must make room.
    """

    _limiter: ConnectionLimiter | None = None
    _last_input = 0.0
    _deadline = None
    _idle_seconds: float | None = None
    _idle_from = 0.0  # the idle time is counted from here: the last input or timeout change
    _idle_call = None

    def take_slot(self, limiter: ConnectionLimiter | None, ip: str) -> str | None:
        """Ask the limiter for a slot: None when admitted, else why not (PER_ADDRESS or
        SERVER_WIDE).  Without a limiter every connection is admitted."""
        self._last_input = reactor.seconds()
        if limiter is None:
            return None
        refusal = limiter.admit(self, ip)
        if refusal is None:
            self._limiter = limiter
        return refusal

    def give_back_slot(self) -> None:
        """On connection loss: free the slot (if still held) and cancel the deadline."""
        self.stop_deadline()
        limiter, self._limiter = self._limiter, None
        if limiter is not None:
            limiter.release(self)

    def note_input(self) -> None:
        self._last_input = self._idle_from = reactor.seconds()

    def set_idle_timeout(self, seconds: float | None) -> None:
        """Call `idle_timed_out()` once the client has sent nothing for `seconds`, counted
        from now and again from each input (`note_input`); None: no idle timeout.

        Why not Twisted's TimeoutMixin: it moves its timer at every input, where here input
        only notes its time and a timer that fires early sets itself for the time left."""
        self._idle_seconds = seconds
        call = self._idle_call
        if seconds is None:
            self._idle_call = None
            if call is not None and call.active():
                call.cancel()
            return
        now = self._idle_from = reactor.seconds()
        if call is None or not call.active():
            self._idle_call = reactor.callLater(seconds, self._idle_check)
        elif call.getTime() > now + seconds:
            call.reset(seconds)

    def idle_timed_out(self) -> None:
        """The client was silent for the idle timeout (the adapter says so and closes)."""

    def _idle_check(self) -> None:
        self._idle_call = None
        seconds = self._idle_seconds
        if seconds is None:
            return
        left = self._idle_from + seconds - reactor.seconds()
        if left > 0:
            self._idle_call = reactor.callLater(left, self._idle_check)
            return
        self.idle_timed_out()

    def last_activity(self) -> float:
        return self._last_input

    def start_deadline(self, seconds: float, passed) -> None:
        """Call `passed()` once, `seconds` from now, however busy the client keeps the line:
        an idle timer alone lets a client that trickles a byte at a time stay for ever.
        0 means no deadline."""
        self.stop_deadline()
        if seconds > 0:
            self._deadline = reactor.callLater(seconds, self._deadline_passed, passed)

    def stop_deadline(self) -> None:
        call, self._deadline = self._deadline, None
        if call is not None and call.active():
            call.cancel()

    def _deadline_passed(self, passed) -> None:
        self._deadline = None
        passed()
