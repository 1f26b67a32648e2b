"""The Twisted side of a POP3 session (RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 6856):
sockets, STLS, the idle timeout, streaming and back-pressure.

`Pop3Protocol` owns the transport and nothing of the protocol: it admits the connection,
passes received bytes to the `Pop3Session` state machine (`session.py`) and carries out what
the session asks.  Message bodies above a small size are streamed from disk by `BodyStreamer`,
a push producer, so memory stays flat and a slow client slows the reads down.
"""

from __future__ import annotations

from typing import BinaryIO

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mailsuite import heap
from mailsuite.config import ConfigError
from mailsuite.limits import AdmittedConnection
from mailsuite.listener import PacedReading, SessionFactory
from mailsuite.pop3.authorization import AUTHORIZATION
from mailsuite.pop3.parser import WireEncoder, check_uidl_format
from mailsuite.pop3.session import Pop3Session
from mailsuite.pop3.streamer import BodyStreamer
from mailsuite.tls import is_secure

# Pipelined input kept while a command runs before we stop reading from the socket.


@implementer(IPushProducer)
class Pop3Protocol(Protocol, TimeoutMixin, AdmittedConnection, PacedReading):
    """One POP3 connection; the `Pop3Connection` its session talks to, and the producer of
    everything its transport sends (replies, and streamed bodies through `BodyStreamer`)."""

    def __init__(self, services, kind: str):
        self.services = services
        self.kind = kind
        self.session = Pop3Session(services, kind, self)
        self.streamer: BodyStreamer | None = None
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
        if not self._admit(client_ip):
            return
        self.setTimeout(self.services.config.pop3.idle_timeout)
        self.session.greet()

    def connectionLost(self, reason=connectionDone) -> None:
        self.setTimeout(None)
        self.services.metrics.disconnected(self.kind)
        # Under TLS the transport's producer wrapper and this protocol refer to each other.
        self._unregister()
        self.cancel_turn()
        if self.streamer is not None:
            self.streamer.stopProducing()
            self.streamer = None
        self.session.connection_lost()
        self.give_back_slot()
        heap.release_soon()

    def timeoutConnection(self) -> None:
        self.session.timed_out()

    # -- the connection's slot and its deadline (mailsuite.limits) --------------------------

    def _admit(self, client_ip: str) -> bool:
        """Connections per IP and in total (limits.*), shared by every listener."""
        refusal = self.take_slot(getattr(self.services, "connections", None), client_ip)
        if refusal is not None:
            self.session.refuse_connection(refusal)
            return False
        self.start_deadline(self.services.config.pop3.login_deadline, self._login_deadline)
        return True

    def resetTimeout(self) -> None:
        self.note_input()
        super().resetTimeout()

    def is_established(self) -> bool:
        return self.session.state != AUTHORIZATION

    def evict(self) -> None:
        self.session.evicted()

    def _login_deadline(self) -> None:
        if self.session.state == AUTHORIZATION and not self.session.closing:
            self.session.deadline_passed()

    def dataReceived(self, data: bytes) -> None:
        if self.session.closing:
            return
        self.resetTimeout()
        self.session.feed(data)

    # -- Pop3Connection: what the session asks for ------------------------------------------

    def write(self, parts: list[bytes]) -> None:
        self.transport.writeSequence(parts)

    def close(self) -> None:
        if self.streamer is not None:
            self.streamer.stopProducing()
            self.streamer = None
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

    def stream(self, fileobj: BinaryIO, encoder: WireEncoder) -> defer.Deferred:
        self.streamer = BodyStreamer(
            self.transport,
            fileobj,
            encoder,
            self.session.services.store.io.submit,
            self.resetTimeout,
        )
        d = self.streamer.start(paused=self.session.output_blocked)

        def sent(result):
            self.streamer = None
            return result

        return d.addCallback(sent)

    def pending_input(self) -> int:
        return self.session.splitter.pending

    # -- IPushProducer for everything we send: the transport calls these when its buffer
    # fills up and drains.

    def pauseProducing(self) -> None:
        self.session.output_blocked = True
        if self.streamer is not None:
            self.streamer.pauseProducing()

    def resumeProducing(self) -> None:
        self.session.output_blocked = False
        if self.streamer is not None:
            self.streamer.resumeProducing()
        if not self.session.lost:
            self.session.pump()

    def stopProducing(self) -> None:
        self.session.output_blocked = True


def build_factory(services, kind: str) -> SessionFactory:
    """The factory for listener `kind`: "pop3" (110, STLS) or "pop3s" (995; app.py wraps TLS)."""
    if kind not in ("pop3", "pop3s"):
        raise ValueError(f"pop3 cannot serve listener kind {kind!r}")
    try:
        check_uidl_format(services.config.pop3.uidl_format)
    except ValueError as e:
        raise ConfigError("pop3.uidl_format", str(e)) from None
    expire = services.config.pop3.expire
    # RFC 2449 §6.7: EXPIRE is "NEVER" or a number of days (we only advertise the policy).
    if expire and not (expire == "NEVER" or expire.isdigit()):
        raise ConfigError("pop3.expire", 'must be "", "NEVER" or a number of days')
    return SessionFactory(Pop3Protocol, services, kind)
