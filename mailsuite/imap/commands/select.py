"""SELECT, EXAMINE (RFC 3501 §6.3.1-2, CONDSTORE/QRESYNC parameters RFC 7162 §3.1.8, §3.2.5)
and CLOSE (§6.4.2).  SELECT is answered from the store's in-memory index alone."""

from __future__ import annotations

from twisted.internet import defer

from mailsuite.imap import response as R
from mailsuite.imap.commands.expunge import STEP as EXPUNGE_STEP
from mailsuite.imap.commands.mailbox import mailbox_arg, open_loaded_folder
from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.sequence import format_sequence_set, parse_sequence_set
from mailsuite.imap.turns import in_steps


def _parse_params(session, params) -> tuple[bool, tuple | None]:
    """(condstore, qresync args) from `(CONDSTORE)` / `(QRESYNC (...))`."""
    if not isinstance(params, list):
        raise ImapBad("Invalid SELECT parameters")
    condstore = False
    qresync = None
    i = 0
    while i < len(params):
        name = str(params[i]).upper() if isinstance(params[i], Atom) else ""
        if name == "CONDSTORE":
            condstore = True
            i += 1
        elif name == "QRESYNC":
            if "QRESYNC" not in session.enabled:
                # RFC 7162 §3.2.5: QRESYNC parameter only after ENABLE QRESYNC.
                raise ImapBad("QRESYNC is not enabled")
            if i + 1 >= len(params) or not isinstance(params[i + 1], list):
                raise ImapBad("QRESYNC needs parameters")
            qresync = _qresync_args(params[i + 1])
            i += 2
        else:
            raise ImapBad("Unknown SELECT parameter")
    return condstore, qresync


def _number(value, what: str) -> int:
    if not isinstance(value, Atom) or not value.isdigit():
        raise ImapBad(f"Invalid {what}")
    return int(value)


def _qresync_args(args: list) -> tuple:
    # RFC 7162 §3.2.5: (uidvalidity mod-sequence [known-uids [(seq-match-data)]])
    if len(args) < 2 or len(args) > 4:
        raise ImapBad("Invalid QRESYNC parameters")
    uidvalidity = _number(args[0], "UIDVALIDITY")
    modseq = _number(args[1], "mod-sequence")
    known = None
    seqmatch = None
    rest = args[2:]
    if rest and isinstance(rest[0], Atom):
        known = parse_sequence_set(rest[0], allow_dollar=False)
        rest = rest[1:]
    if rest:
        if not isinstance(rest[0], list) or len(rest[0]) != 2:
            raise ImapBad("Invalid QRESYNC sequence match data")
        seqmatch = (
            parse_sequence_set(rest[0][0], allow_dollar=False),
            parse_sequence_set(rest[0][1], allow_dollar=False),
        )
    return uidvalidity, modseq, known, seqmatch


def select(session, cmd):
    if not cmd.args or len(cmd.args) > 2:
        raise ImapBad(f"{cmd.name} needs a mailbox name")
    name = mailbox_arg(session, cmd.args[0])
    condstore, qresync = (False, None)
    if len(cmd.args) == 2:
        condstore, qresync = _parse_params(session, cmd.args[1])
    had_selection = session.view is not None
    # RFC 3501 §6.3.1: a failed SELECT leaves no mailbox selected; RFC 7162 §3.2.11:
    # with QRESYNC the end of the old selection is announced with [CLOSED].
    session.deselect()
    if had_selection and (session.qresync or session.rev2):
        # RFC 9051 §6.3.2 sends [CLOSED] always
        session.send(b"* OK [CLOSED] Previous mailbox closed\r\n")
    # A folder not in memory yet is loaded in the durable pool: its first load lists it (a
    # second for 50,000 files other programs left), and writes its uidlist when it has none.
    folder = open_loaded_folder(session, name)
    if type(folder) is not defer.Deferred:
        return _selected(session, cmd, folder, condstore, qresync)

    def loaded(folder):
        if session.protocol.closed:
            return None  # gone meanwhile: nothing to select for
        return _selected(session, cmd, folder, condstore, qresync)

    return folder.addCallback(loaded)


def _selected(session, cmd, folder, condstore: bool, qresync):
    if condstore:
        session.enabled.add("CONDSTORE")
    readonly = cmd.name == "EXAMINE"
    view = session.select(folder, readonly)
    msgs = view.messages
    out = view.flag_lines()
    out.append(b"* %d EXISTS\r\n" % len(msgs))
    if session.rev2:
        # RFC 9051 §6.3.2: no RECENT and no UNSEEN; a LIST response with the mailbox's name
        out.append(b'* LIST () "/" ' + R.encode_mailbox(folder.name, True) + b"\r\n")
    else:
        out.append(b"* %d RECENT\r\n" % len(view.recent))
        for i, m in enumerate(msgs):
            if "\\Seen" not in m.flags:
                out.append(b"* OK [UNSEEN %d] First unseen\r\n" % (i + 1))
                break
    out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidvalidity)
    out.append(b"* OK [MAILBOXID (%s)] Ok\r\n" % folder.mailbox_id.encode())  # RFC 8474 §4.2
    out.append(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % folder.uidnext)
    # RFC 7162 §3.1.2.1: HIGHESTMODSEQ on every successful SELECT/EXAMINE.
    out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % folder.highestmodseq)
    # RFC 4467 §8: the URLAUTH mechanisms, in an untagged OK to SELECT and EXAMINE.
    out.append(b"* OK [URLMECH INTERNAL] URLAUTH mechanisms\r\n")
    session.send_many(out)
    if qresync is not None:
        _resync(session, view, *qresync)
    mode = "READ-ONLY" if readonly else "READ-WRITE"
    return (mode, f"{cmd.name} completed")


def _resync(session, view, uidvalidity, modseq, known, seqmatch) -> None:
    """RFC 7162 §3.2.5.2: report what changed since the client's modseq."""
    folder = view.folder
    if uidvalidity != folder.uidvalidity:
        return
    msgs = view.messages
    present = [m.uid for m in msgs]
    top = folder.uidnext - 1
    if known is not None:
        ranges = known.resolve(max(top, 1))
    else:
        ranges = [(1, top)] if top >= 1 else []
    # The index keeps no history of expunged UIDs: every UID in the client's range that is
    # absent is reported (RFC 7162 §3.2.5.2 allows reporting UIDs expunged earlier).
    present_set = set(present)
    vanished = []
    for lo, hi in ranges:
        hi = min(hi, top)
        if hi - lo > 5_000_000:
            lo = max(lo, hi - 5_000_000)
        vanished.extend(u for u in range(lo, hi + 1) if u not in present_set)
    if vanished:
        session.send(b"* VANISHED (EARLIER) " + format_sequence_set(vanished).encode() + b"\r\n")
    for seq, m in enumerate(msgs, 1):
        if m.modseq > modseq:
            session.send(view.flags_fetch(seq, m))


def close(session, cmd):
    if cmd.args:
        raise ImapBad("CLOSE takes no arguments")
    view = session.view
    doomed = []
    if not view.readonly:
        # RFC 3501 §6.4.2: expunge silently (no untagged EXPUNGE responses).
        doomed = [m for m in view.messages if "\\Deleted" in m.flags and view.is_live(m)]
    if len(doomed) <= EXPUNGE_STEP:
        if doomed:
            session.mailbox.expunge(view.folder, doomed, source=view)
        return _closed(session, view)
    # Many messages: in steps, as EXPUNGE takes them, other connections served between them.
    d = in_steps(
        session,
        view,
        doomed,
        EXPUNGE_STEP,
        lambda part: session.mailbox.expunge(view.folder, part, source=view),
    )
    return d.addCallback(lambda _: _closed(session, view))


def _closed(session, view):
    if session.view is view:
        session.deselect()
    # The tagged OK once the expunged files are gone (the folder's durable-pool queue).
    return view.folder.when_written()


def unselect(session, cmd):
    # RFC 3691: like CLOSE, without the expunge.
    if cmd.args:
        raise ImapBad("UNSELECT takes no arguments")
    session.deselect()
