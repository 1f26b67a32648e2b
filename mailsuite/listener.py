"""The one factory shape every protocol listener uses: a session per connection, built with
the shared services and the listener kind ("smtp", "imaps", ...); and the adapters' half of
fairness for line-protocol sessions (`PacedReading`)."""

from __future__ import annotations

from twisted.internet import protocol, reactor


class SessionFactory(protocol.ServerFactory):
    def __init__(self, session_class, services, kind: str):
        self.session_class = session_class
        self.services = services
        self.kind = kind

    def buildProtocol(self, addr):
        session = self.session_class(self.services, self.kind)
        session.factory = self
        return session


class PacedReading:
    """Mixed into a Twisted adapter whose `session` takes turns (`busy`, `output_blocked`,
    `yielded`, `lost`, `pump()`): reading stops while input piles up behind a running command,
    unread responses or a yielded turn, and the session is called again on the next reactor
    turn when it yielded. The adapter says how much input its session holds."""

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
