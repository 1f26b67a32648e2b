"""NOOP (RFC 3501 §6.1.2) and CHECK (§6.4.1): polling the selected folder for changes."""

from __future__ import annotations


def noop(session, cmd):
    # RFC 3501 §6.1.2: NOOP is the polite way to poll for updates; the session sends them
    # before the tagged OK.
    if session.view is not None:
        return session.imap_state.refresh(session.view.folder)
    return None


def check(session, cmd):
    folder = session.view.folder
    listed = session.imap_state.refresh(folder, force=True)
    if listed is not None:
        return listed.addCallback(lambda _: _checkpoint(session, folder))
    _checkpoint(session, folder)
    return None


def _checkpoint(session, folder) -> None:
    # RFC 3501 §6.4.1: a checkpoint.  The index (a cache: mail is durable when it arrives)
    # is written in the durable pool; the answer need not wait for it.
    session.services.store.persist_indexes([folder])
