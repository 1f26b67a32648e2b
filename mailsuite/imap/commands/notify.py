"""NOTIFY (RFC 5465 §3): `NOTIFY SET [STATUS] (filter events) ...` and `NOTIFY NONE`.

The parsing is `notify_spec`'s, the listening and pushing the session's `Notifier`'s; this
module only swaps one for another."""

from __future__ import annotations

from mailsuite.imap.commands.mailbox import mailbox_arg
from mailsuite.imap.commands.notifier import Notifier, inbox_names, watched_tree
from mailsuite.imap.commands.notify_spec import parse_notify_set
from mailsuite.imap.parser import Atom, ImapBad


def notify(session, cmd):
    if not cmd.args or not isinstance(cmd.args[0], Atom):
        raise ImapBad("NOTIFY needs SET or NONE")
    verb = cmd.args[0].upper()
    if verb == "NONE":
        if len(cmd.args) != 1:
            raise ImapBad("NOTIFY NONE takes no arguments")
        stop_notify(session)
        return "NOTIFY completed"
    if verb != "SET":
        raise ImapBad("NOTIFY needs SET or NONE")
    spec = parse_notify_set(cmd.args[1:], lambda value: mailbox_arg(session, value))
    # RFC 5465 §3: a new NOTIFY SET replaces the one in force.
    stop_notify(session)
    if not spec.has_inboxes:
        return _start(session, spec)

    def known(names):
        if session.protocol.closed:
            return "NOTIFY completed"  # nobody left to notify: nothing to start (or stop)
        spec.inboxes = names
        return _start(session, spec)

    # RFC 5465 §6: which mailboxes `inboxes` are is known before anything is watched.
    return inbox_names(session).addCallback(known)


def _start(session, spec):
    """Deferred[str]: the notifier started once the folder tree is read (the durable pool)."""

    def start(tree) -> str:
        if session.protocol.closed:
            return "NOTIFY completed"
        notifier = Notifier(session, spec, tree)
        session.notifier = notifier
        if spec.status:
            session.send_many(notifier.initial_status())
        return "NOTIFY completed"

    return watched_tree(session, spec).addCallback(start)


def stop_notify(session) -> None:
    if session.notifier is not None:
        session.notifier.stop()
        session.notifier = None
