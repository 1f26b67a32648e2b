"""NOOP (RFC 3501 §6.1.2) and CHECK (§6.4.1): polling the selected folder for changes."""

from __future__ import annotations


def noop(session, cmd):
    # RFC 3501 §6.1.2: NOOP is the polite way to poll for updates; the session sends them
    # before the tagged OK.
    if session.view is not None:
        session.imap_state.refresh(session.view.folder)


def check(session, cmd):
    session.imap_state.refresh(session.view.folder, force=True)
    session.view.folder.save_index()
