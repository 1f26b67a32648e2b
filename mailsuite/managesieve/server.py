"""The Twisted side of a ManageSieve session (RFC 5804): the socket, STARTTLS, the idle
timeout, the login deadline and back-pressure.

`ManageSieveProtocol` owns the transport and nothing of the protocol: it admits the connection,
passes received bytes to the `ManageSieveSession` state machine (`session.py`) and carries out
what the session asks.
"""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mailsuite import heap
from mailsuite.limits import AdmittedConnection
from mailsuite.listener import PacedReading, SessionFactory
from mailsuite.managesieve.auth import NONAUTH
from mailsuite.managesieve.session import ManageSieveSession
from mailsuite.tls import is_secure

# Pipelined input kept while a command runs before we stop reading from the socket.  A
# literal being read is input the session is waiting for, so this only bounds what waits
# behind a running command.


@implementer(IPushProducer)
class ManageSieveProtocol(Protocol, TimeoutMixin, AdmittedConnection, PacedReading):
    """One ManageSieve connection; the `SieveConnection` its session talks to, and the producer
    of the responses its transport sends."""

    def __init__(self, services, kind: str):
        self.services = services
        self.kind = kind
        self.session = ManageSieveSession(services, kind, self)
        self._producing = False

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
        refusal = self.take_slot(getattr(self.services, "connections", None), client_ip)
        if refusal is not None:
            self.session.refuse_connection(refusal)
            return
        settings = self.services.config.managesieve
        self.start_deadline(settings.login_deadline, self._login_deadline)
        self.setTimeout(settings.idle_timeout)
        self.session.greet()

    def logged_out(self) -> None:
        self.start_deadline(self.services.config.managesieve.login_deadline, self._login_deadline)

    def connectionLost(self, reason=connectionDone) -> None:
        self.setTimeout(None)
        self.services.metrics.disconnected(self.kind)
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
        return self.session.state != NONAUTH

    def evict(self) -> None:
        self.session.evicted()

    def _login_deadline(self) -> None:
        if self.session.state == NONAUTH and not self.session.closing:
            self.session.deadline_passed()

    def dataReceived(self, data: bytes) -> None:
        if self.session.closing:
            return
        self.resetTimeout()
        self.session.feed(data)

    # -- SieveConnection: what the session asks for -----------------------------------------

    def write(self, parts: list[bytes]) -> None:
        self.transport.writeSequence(parts)

    def close(self) -> None:
        # TLS waits for a registered producer to go before it sends close_notify.
        self._unregister()
        self.transport.loseConnection()

    def _unregister(self) -> None:
        if self._producing:
            self._producing = False
            try:
                self.transport.unregisterProducer()
            except (AttributeError, RuntimeError):
                pass  # the transport has let go of it already

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


def build_factory(services, kind: str) -> SessionFactory:
    """The factory for listener "managesieve" (4190, STARTTLS; RFC 5804 defines no implicit
    TLS port)."""
    if kind != "managesieve":
        raise ValueError(f"managesieve cannot serve listener kind {kind!r}")
    return SessionFactory(ManageSieveProtocol, services, kind)
