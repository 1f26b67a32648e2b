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
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import TimeoutMixin

from mailsuite.config import ConfigError
from mailsuite.limits import AdmittedConnection
from mailsuite.listener import SessionFactory
from mailsuite.pop3.authorization import AUTHORIZATION
from mailsuite.pop3.parser import WireEncoder, check_uidl_format
from mailsuite.pop3.session import Pop3Session
from mailsuite.pop3.streamer import BodyStreamer
from mailsuite.tls import is_secure

# Pipelined input kept while a command runs before we stop reading from the socket.
MAX_PENDING_INPUT = 64 * 1024


class Pop3Protocol(Protocol, TimeoutMixin, AdmittedConnection):
    """One POP3 connection; the `Pop3Connection` its session talks to."""

    def __init__(self, services, kind: str):
        self.services = services
        self.kind = kind
        self.session = Pop3Session(services, kind, self)
        self.streamer: BodyStreamer | None = None
        self.reading_paused = False

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        client_ip = getattr(peer, "host", "") or ""
        self.session.connected(client_ip)
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        if not self._admit(client_ip):
            return
        self.setTimeout(self.services.config.pop3.idle_timeout)
        self.session.greet()

    def connectionLost(self, reason=connectionDone) -> None:
        self.setTimeout(None)
        if self.streamer is not None:
            self.streamer.stopProducing()
            self.streamer = None
        self.session.connection_lost()
        self.give_back_slot()

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
        self.transport.loseConnection()

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
        d = self.streamer.start()

        def sent(result):
            self.streamer = None
            return result

        return d.addCallback(sent)

    def processed(self) -> None:
        session = self.session
        if session.busy and session.splitter.pending > MAX_PENDING_INPUT:
            if not self.reading_paused:
                self.reading_paused = True
                self.transport.pauseProducing()
        elif not session.busy and self.reading_paused:
            self.reading_paused = False
            self.transport.resumeProducing()


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
