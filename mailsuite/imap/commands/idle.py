"""IDLE (RFC 2177): updates pushed as they happen until the client says DONE.

Delivery, other sessions and POP3 change the shared Folder, whose events reach the view at
once.  Changes made behind the process's back (a file dropped into new/) are caught by one
process-wide poll of the folders being idled on, once a second."""

from __future__ import annotations

import weakref

from twisted.internet import defer, task

from mailsuite.imap.commands import command
from mailsuite.imap.parser import ImapBad
from mailsuite.imap.session import refresh_folder

POLL_SECONDS = 1.0


class _FolderPoller:
    """One LoopingCall refreshing every folder that some session idles on."""

    def __init__(self):
        self.folders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.loop: task.LoopingCall | None = None

    def add(self, folder) -> None:
        self.folders[folder] = self.folders.get(folder, 0) + 1
        if self.loop is None:
            self.loop = task.LoopingCall(self._tick)
            self.loop.start(POLL_SECONDS, now=False)

    def remove(self, folder) -> None:
        n = self.folders.get(folder, 0) - 1
        if n <= 0:
            self.folders.pop(folder, None)
        else:
            self.folders[folder] = n
        if not self.folders and self.loop is not None:
            if self.loop.running:
                self.loop.stop()
            self.loop = None

    def _tick(self) -> None:
        for folder in list(self.folders.keys()):
            try:
                refresh_folder(folder)
            except OSError:
                pass


POLLER = _FolderPoller()


class Idling:
    def __init__(self, session, cmd):
        self.session = session
        self.cmd = cmd
        self.done = defer.Deferred()
        self.folder = session.view.folder if session.view is not None else None
        if self.folder is not None:
            POLLER.add(self.folder)

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
            POLLER.remove(self.folder)
            self.folder = None


@command("IDLE", states=frozenset({"authenticated", "selected"}))
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
