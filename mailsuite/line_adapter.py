"""The Twisted side of a line-protocol session (POP3, ManageSieve): the socket, STARTTLS/STLS,
the idle timeout, the login deadline, the connection's slot, paced reading and back-pressure.

`LineProtocol` owns the transport and nothing of the protocol: it admits the connection,
passes received bytes to its `LineSession` and carries out what the session asks (write,
close, start TLS).  A subclass names the session class; POP3's adds its body streamer.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mailsuite import heap
from mailsuite.limits import AdmittedConnection
from mailsuite.tls import is_secure
from mailsuite.transport import unregister_producer


class PacedReading:
    """Mixed into a Twisted adapter whose `session` takes turns (`busy`, `output_blocked`,
    `yielded`, `lost`, `pump()`): reading stops while input piles up behind a running command,
    unread responses or a yielded turn, and the session is called again on the next reactor
    turn when it yielded. The adapter says how much input its session holds."""

    # Pipelined input kept while a command runs before we stop reading from the socket.  A
    # literal being read is input the session is waiting for, so this only bounds what waits
    # behind a running command.
    MAX_PENDING_INPUT = 64 * 1024
    reading_paused = False
    _turn = None  # the call that resumes the session on the next reactor turn

    def pending_input(self) -> int:
        raise NotImplementedError

    def processed(self) -> None:
        """Only buffered input pauses reading: pausing on the transport's signal alone would
        stall a TLS handshake that has not finished yet."""
        session = self.session
        if session.lost:
            return
        waiting = session.busy or session.output_blocked or session.yielded
        want_pause = waiting and self.pending_input() > self.MAX_PENDING_INPUT
        if want_pause != self.reading_paused:
            self.reading_paused = want_pause
            if want_pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()
        if session.yielded and self._turn is None:
            self._turn = reactor.callLater(0, self._next_turn)

    def _next_turn(self) -> None:
        self._turn = None
        if not self.session.lost:
            self.session.pump()

    def cancel_turn(self) -> None:
        if self._turn is not None and self._turn.active():
            self._turn.cancel()
        self._turn = None


@implementer(IPushProducer)
class LineProtocol(Protocol, TimeoutMixin, AdmittedConnection, PacedReading):
    """One connection of a line protocol; the connection its session talks to, and the
    producer of the replies its transport sends.  `session_class(services, kind, conn)` makes
    the session (a `mailsuite.line_session.LineSession`)."""

    session_class: type

    def __init__(self, services, kind: str):
        self.services = services
        self.kind = kind
        self.session = self.session_class(services, kind, self)
        self._producing = False  # registered as the transport's producer

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        client_ip = getattr(peer, "host", "") or ""
        self.services.metrics.connected(self.kind)
        self.session.connected(client_ip)
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        self.transport.registerProducer(self, True)
        self._producing = True
        # Connections per IP and in total (limits.*), shared by every listener.
        refusal = self.take_slot(getattr(self.services, "connections", None), client_ip)
        if refusal is not None:
            self.session.refuse_connection(refusal)
            return
        self.start_login_deadline()
        self.setTimeout(self.session.settings.idle_timeout)
        self.session.greet()

    def start_login_deadline(self) -> None:
        """From now, the session has `login_deadline` seconds to log in (again)."""
        self.start_deadline(self.session.settings.login_deadline, self._login_deadline)

    def connectionLost(self, reason=connectionDone) -> None:
        self.setTimeout(None)
        self.services.metrics.disconnected(self.kind)
        # Under TLS the transport's producer wrapper and this protocol refer to each other.
        self._unregister()
        self.cancel_turn()
        self.session.connection_lost()
        self.give_back_slot()
        heap.release_soon()

    def timeoutConnection(self) -> None:
        self.session.timed_out()

    # -- the connection's slot and its deadline (mailsuite.limits) --------------------------

    def resetTimeout(self) -> None:
        self.note_input()
        super().resetTimeout()

    def is_established(self) -> bool:
        return not self.session.awaiting_login()

    def evict(self) -> None:
        self.session.evicted()

    def _login_deadline(self) -> None:
        if self.session.awaiting_login() and not self.session.closing:
            self.session.deadline_passed()

    def dataReceived(self, data: bytes) -> None:
        if self.session.closing:
            return
        self.resetTimeout()
        self.session.feed(data)

    # -- what the session asks for ----------------------------------------------------------

    def write(self, parts: list[bytes]) -> None:
        self.transport.writeSequence(parts)

    def close(self) -> None:
        # TLS waits for a registered producer to go before it sends close_notify.
        self._unregister()
        self.transport.loseConnection()

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            unregister_producer(self.transport)

    def is_secure(self) -> bool:
        return is_secure(self.transport)

    def start_tls(self) -> None:
        self.transport.startTLS(self.services.tls.server_options())

    def pending_input(self) -> int:
        return self.session.reader.pending

    # -- IPushProducer for what we send: the transport calls these when its buffer fills up
    # and drains.

    def pauseProducing(self) -> None:
        self.session.output_blocked = True

    def resumeProducing(self) -> None:
        self.session.output_blocked = False
        if not self.session.lost:
            self.session.pump()

    def stopProducing(self) -> None:
        self.session.output_blocked = True
