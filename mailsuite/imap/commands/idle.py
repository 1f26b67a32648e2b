"""IDLE (RFC 2177): updates pushed as they happen until the client says DONE.

Delivery, other sessions and POP3 change the shared Folder, whose events reach the view at
once.  Changes made behind the process's back (a file dropped into new/) are caught by the
server's poll of the folders being idled on (`ImapState.idle_poll`), once a second."""

from __future__ import annotations

from twisted.internet import defer

from mailsuite.imap.parser import ImapBad


class Idling:
    def __init__(self, session, cmd):
        self.session = session
        self.cmd = cmd
        self.done = defer.Deferred()
        self.folder = session.view.folder if session.view is not None else None
        if self.folder is not None:
            session.imap_state.idle_poll.add(self.folder)

    def wake(self) -> None:
        # RFC 2177: untagged responses while idling, at once.
        s = self.session
        if s.view is not None:
            s.send_updates(expunge_ok=True)
            s.flush()

    def on_line(self, line: bytes) -> None:
        self.stop()
        if line.strip().upper() == b"DONE":
            self.done.callback(None)
        else:
            self.done.errback(ImapBad("Expected DONE"))

    def stop(self) -> None:
        s = self.session
        s.line_handler = None
        if s.idling is self:
            s.idling = None
        if self.folder is not None:
            s.imap_state.idle_poll.remove(self.folder)
            self.folder = None


def idle(session, cmd):
    if cmd.args:
        raise ImapBad("IDLE takes no arguments")
    idling = Idling(session, cmd)
    session.idling = idling
    session.line_handler = idling.on_line
    session.send_updates(expunge_ok=True)
    session.send(b"+ idling\r\n")
    session.flush()
    return idling.done
