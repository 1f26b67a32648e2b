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


# Units of input a session handles per call before it lets other connections have the
# reactor (its adapter calls it again on the next turn).
COMMANDS_PER_TURN = 32


class TurnTaking:
    """Mixed into a line-protocol session (POP3, ManageSieve): `pump` runs what its reader
    holds, at most COMMANDS_PER_TURN units a call, while nothing else holds it (`busy`,
    `output_blocked`, `closing`, `lost`), then tells its connection (`conn.processed()`).
    The session says where input comes from and how one unit is run."""

    pumping = False
    yielded = False  # pump stopped at COMMANDS_PER_TURN with input left

    def next_input(self):
        """The next complete unit of input, or None."""
        raise NotImplementedError

    def run_input(self, unit) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        if self.pumping:
            return  # a Deferred that fired at once: the loop below goes on by itself
        self.pumping = True
        self.yielded = False
        steps = 0
        try:
            while not (self.busy or self.output_blocked or self.closing or self.lost):
                if steps >= COMMANDS_PER_TURN:
                    self.yielded = True
                    break
                unit = self.next_input()
                if unit is None:
                    break
                steps += 1
                self.run_input(unit)
        finally:
            self.pumping = False
        self.conn.processed()


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
