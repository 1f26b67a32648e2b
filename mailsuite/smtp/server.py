"""The Twisted side of an SMTP session: sockets, TLS, timeouts and back-pressure.

`SmtpProtocol` owns the transport and nothing of the protocol: it admits the connection,
greets (after the optional delay), passes received bytes to the `SmtpSession` state machine
(`session.py`) and carries out what the session asks (writes, close, STARTTLS, timeouts).
"""

from __future__ import annotations

from twisted.internet import protocol, reactor
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsuite import heap
from mailsuite.limits import AdmittedConnection
from mailsuite.listener import SessionFactory
from mailsuite.smtp.session import SmtpSession
from mailsuite.tls import is_secure, tls_info
from mailsuite.transport import close_if_sent, unregister_producer

log = Logger(namespace="mailsuite.smtp")

# While a Deferred is in flight, stop reading once this much pipelined input is buffered.
PAUSE_BUFFER = 256 * 1024


class SmtpProtocol(protocol.Protocol, AdmittedConnection):
    """One SMTP connection; the `SmtpConnection` its session talks to."""

    def __init__(self, services, kind: str) -> None:
        self.services = services
        self.kind = kind
        self.session = SmtpSession(services, kind, self)
        self._greet_call = None
        self._paused = False
        self._turn = None  # the call that resumes the session on the next reactor turn
        self._producing = False  # registered as the transport's producer

    # --- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        client_ip = getattr(peer, "host", "") or ""
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        session = self.session
        self.services.metrics.connected(self.kind)
        session.connected(client_ip, self.kind == "submissions" or is_secure(self.transport))
        self.transport.registerProducer(self, True)
        self._producing = True
        if not self._admit(client_ip):
            return
        self.set_idle_timeout(session.cfg.command_timeout)
        delay = session.cfg.greeting_delay
        if delay > 0:
            self._greet_call = reactor.callLater(delay, session.greet)
        else:
            session.greet()

    def connectionLost(self, reason: Failure = None) -> None:
        self.set_idle_timeout(None)
        self.services.metrics.disconnected(self.kind)
        self.session.connection_lost()
        # Under TLS the transport's producer wrapper and this protocol refer to each other.
        if self._producing:
            self._producing = False
            unregister_producer(self.transport)
        for call in (self._greet_call, self._turn):
            if call is not None and call.active():
                call.cancel()
        self._greet_call = self._turn = None
        self.give_back_slot()
        heap.release_soon()

    def idle_timed_out(self) -> None:
        self.session.timed_out()

    # --- the connection's slot and its deadline (mailsuite.limits) ---------------------------

    def _admit(self, client_ip: str) -> bool:
        refusal = self.take_slot(self.services.connections, client_ip)
        if refusal is not None:
            self.session.refuse_connection(refusal)
            return False
        self.start_deadline(self.session.cfg.session_deadline, self._deadline_passed_check)
        return True

    def is_established(self) -> bool:
        """Logged in, or in a mail transaction (or delivering one): never evicted."""
        session = self.session
        return session.user is not None or session.tx is not None or session.busy

    def evict(self) -> None:
        self.session.evicted()

    def _deadline_passed_check(self) -> None:
        session = self.session
        if session.mode == "closed" or session.user is not None or session.messages_accepted:
            return
        if session.tx is not None or session.busy:
            # A message is on its way: it gets one data timeout more to arrive.
            self.start_deadline(session.cfg.data_timeout, self._deadline_grace_over)
            return
        session.deadline_passed()

    def _deadline_grace_over(self) -> None:
        session = self.session
        if session.mode != "closed" and session.user is None and not session.messages_accepted:
            session.deadline_passed()

    def dataReceived(self, data: bytes) -> None:
        if self.session.mode == "closed":
            return
        self.note_input()
        self.session.feed(data)

    # --- SmtpConnection: what the session asks for -------------------------------------------

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        self.set_idle_timeout(None)
        if not close_if_sent(self.transport):
            self.transport.loseConnection()

    def start_tls(self) -> None:
        self.transport.startTLS(self.services.tls.server_options())

    def set_timeout(self, seconds: float | None) -> None:
        self.set_idle_timeout(seconds)

    def tls_info(self) -> str | None:
        return tls_info(self.transport)

    def processed(self) -> None:
        """Stop reading while replies pile up unread, or a Deferred waits, and input piles up.

        A client that pipelines endless NOOPs without reading the replies must not make us
        buffer them all: like Postfix's blocking writes, we stop reading until it catches up.
        """
        session = self.session
        # Only buffered input pauses reading: pausing on the transport's own signal alone
        # would stall a TLS handshake that has not finished yet.
        waiting = session.output_blocked or session.busy or session.yielded
        want_pause = waiting and session.lines.pending() > PAUSE_BUFFER
        if want_pause != self._paused and session.mode != "closed":
            self._paused = want_pause
            if want_pause:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()
        # A session that yielded its turn goes on once the others have had theirs.
        if session.yielded and self._turn is None and session.mode != "closed":
            self._turn = reactor.callLater(0, self._next_turn)

    def _next_turn(self) -> None:
        self._turn = None
        if self.session.mode != "closed":
            self.session.process()

    # --- IPushProducer for our own replies: the transport calls these when its write buffer
    # fills up and drains.

    def pauseProducing(self) -> None:
        self.session.output_blocked = True
        self.processed()

    def resumeProducing(self) -> None:
        self.session.output_blocked = False
        self.processed()
        if self.session.mode != "closed":
            self.session.process()

    def stopProducing(self) -> None:
        self.session.output_blocked = True


def build_factory(services, kind: str) -> SessionFactory:
    """Factory for the "smtp", "submission" or "submissions" listener (docs/internals.md)."""
    if kind not in ("smtp", "submission", "submissions"):
        raise ValueError(f"not an SMTP listener kind: {kind}")
    return SessionFactory(SmtpProtocol, services, kind)
