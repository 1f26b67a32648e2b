"""EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1)."""

from __future__ import annotations

import functools

from twisted.internet import defer

from mailsuite.imap.parser import ImapBad, ImapNo
from mailsuite.imap.sequence import parse_sequence_set
from mailsuite.imap.turns import in_steps


def expunge_messages(session, msgs) -> defer.Deferred | None:
    """Remove `msgs` from the folder and tell the client (EXPUNGE lines or VANISHED); many
    messages in steps that leave the reactor to the other connections between them
    (mailsuite.imap.turns): a Deferred then, None when done at once."""
    view = session.view
    folder = view.folder
    if len(msgs) <= STEP:
        _expunge_step(session, view, msgs)
        # The tagged OK once the files are gone (the folder's durable-pool queue): a client
        # told the messages are expunged never finds them on disk.
        return folder.when_written()
    d = in_steps(session, view, msgs, STEP, functools.partial(_expunge_step, session, view))
    return d.addCallback(lambda _: folder.when_written())


# Messages removed between two looks at the clock: an unlink each, and one pass over the
# folder's index per step.
STEP = 2000


def _expunge_step(session, view, msgs) -> None:
    live = [m for m in msgs if view.is_live(m)]
    uids = session.mailbox.expunge(view.folder, live, source=view) if live else []
    # Messages other sessions removed are reported along with ours (we may: this command
    # allows EXPUNGE responses), so the numbering stays right.
    gone = set(uids) | view.pending_expunge
    view.pending_expunge = set()
    session.send_many(view.remove_expunged(gone))


def _deleted(view, pool) -> list:
    return [m for m in pool if "\\Deleted" in m.flags]


def expunge(session, cmd):
    if cmd.args:
        raise ImapBad("EXPUNGE takes no arguments")
    view = session.view
    if view.readonly:
        raise ImapNo("READ-ONLY", "Mailbox is read-only")
    return expunge_messages(session, _deleted(view, view.messages))


def uid_expunge(session, cmd):
    if len(cmd.args) != 1:
        raise ImapBad("UID EXPUNGE needs a UID set")
    view = session.view
    seqset = parse_sequence_set(cmd.args[0])
    if view.readonly:
        raise ImapNo("READ-ONLY", "Mailbox is read-only")
    # RFC 4315 §2.1: only messages both in the set and marked \Deleted.
    return expunge_messages(session, _deleted(view, [m for _, m in view.select(seqset, uid=True)]))
