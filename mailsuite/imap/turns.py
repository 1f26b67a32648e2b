"""A command over many messages shares the reactor with every other connection.

One process serves every user, so a `STORE 1:* +FLAGS (\\Seen)` or an EXPUNGE over a folder of
50,000 messages, run in one go, would hold every other client (a greeting, a login, a NOOP)
for the whole of it: a second or more.  Such a command works in steps instead, and after each
step that ends its share of time (`TURN_SECONDS`) it waits for the next reactor turn, so that
the I/O waiting meanwhile is served first.  Small commands finish in their first step and
never wait.
"""

from __future__ import annotations

import time

from twisted.internet import defer, reactor, task

# Work a command does before it lets the other connections have the reactor.
TURN_SECONDS = 0.01


class Turns:
    """The time share of one command on the reactor."""

    def __init__(self, seconds: float | None = None):
        self._seconds = TURN_SECONDS if seconds is None else seconds
        self._until = time.monotonic() + self._seconds

    def spent(self) -> bool:
        """Whether this command has used its share of the current turn."""
        return time.monotonic() >= self._until

    def next(self) -> defer.Deferred:
        """Fires on a later reactor turn, after the I/O that was ready, with a new share."""
        return task.deferLater(reactor, 0, self._renew)

    def _renew(self) -> None:
        self._until = time.monotonic() + self._seconds


@defer.inlineCallbacks
def in_steps(session, view, items: list, size: int, step):
    """`step(part)` over `items`, `size` at a time, waiting for a later reactor turn after a
    part that ends the command's share.  Deferred[bool]: False when the session's selection
    went meanwhile (its connection closed), and the rest was left undone."""
    turns = Turns()
    for start in range(0, len(items), size):
        if start and turns.spent():
            yield turns.next()
            if session.view is not view:
                return False
        step(items[start : start + size])
    return True
