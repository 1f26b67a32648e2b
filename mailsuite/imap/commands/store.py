"""STORE and UID STORE (RFC 3501 §6.4.6) with CONDSTORE's UNCHANGEDSINCE (RFC 7162 §3.1.3).

Flags live in the store's index and Maildir file names: no message file is read."""

from __future__ import annotations

from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.sequence import format_sequence_set, parse_sequence_set
from mailsuite.imap.turns import in_steps

SYSTEM_FLAGS = {
    "\\SEEN": "\\Seen",
    "\\ANSWERED": "\\Answered",
    "\\FLAGGED": "\\Flagged",
    "\\DELETED": "\\Deleted",
    "\\DRAFT": "\\Draft",
}
_ATOM_BAD = set('(){ %*"\\]')


def parse_flags(value) -> list[str]:
    """A flag list or a single flag as IMAP flag names (system flags in canonical case)."""
    items = value if isinstance(value, list) else [value]
    flags = []
    for item in items:
        if not isinstance(item, Atom):
            raise ImapBad("Invalid flag")
        if item.startswith("\\"):
            canon = SYSTEM_FLAGS.get(item.upper())
            if canon is None:
                if item.upper() == "\\RECENT":
                    continue  # RFC 3501 §2.3.2: \Recent cannot be changed by a client
                raise ImapBad(f"Invalid system flag {item[:30]}")
            flags.append(canon)
        else:
            if any(c in _ATOM_BAD or ord(c) < 0x21 or ord(c) > 0x7E for c in item):
                raise ImapBad("Invalid keyword")
            flags.append(str(item))
    return flags


def _store(session, cmd, uid: bool):
    args = list(cmd.args)
    if len(args) < 3:
        raise ImapBad("STORE needs a message set, an item and flags")
    view = session.view
    seqset = parse_sequence_set(args.pop(0))
    unchanged_since = None
    if isinstance(args[0], list):
        mods = args.pop(0)
        if len(mods) != 2 or str(mods[0]).upper() != "UNCHANGEDSINCE":
            raise ImapBad("Invalid STORE modifier")
        if not isinstance(mods[1], Atom) or not mods[1].isdigit():
            raise ImapBad("Invalid UNCHANGEDSINCE value")
        unchanged_since = int(mods[1])
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    if len(args) < 2 or not isinstance(args[0], Atom):
        raise ImapBad("Invalid STORE data item")
    item = args[0].upper()
    silent = item.endswith(".SILENT")
    base = item[: -len(".SILENT")] if silent else item
    modes = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}
    if base not in modes:
        raise ImapBad("Invalid STORE data item")
    flags = parse_flags(args[1] if len(args) == 2 else args[1:])
    view.check_seqset(seqset, uid)
    if view.readonly:
        raise ImapNo("READ-ONLY", "Mailbox is read-only")
    run = _StoreRun(session, view, flags, modes[base], unchanged_since, silent, uid)
    selected = view.select(seqset, uid)
    if len(selected) <= STEP:
        run.step(selected)
        return _when_written(view, run)
    # In steps (mailsuite.imap.turns), each whole: a message another session expunges or
    # moves meanwhile is either changed before it goes (MOVE carries the flags over) or found
    # gone by its step and reported.
    d = in_steps(session, view, selected, STEP, run.step)
    return d.addCallback(lambda done: _when_written(view, run) if done else None)


def _when_written(view, run):
    """The tagged reply once the renames are on disk (the folder's durable-pool queue): a
    client told OK finds the flags in the file names, as any Maildir reader does."""
    d = view.folder.when_written()
    if d is None:
        return run.outcome()
    return d.addCallback(lambda _: run.outcome())


# Messages changed between two looks at the clock (turns.Turns): a rename each, ~10 µs.
STEP = 256


class _StoreRun:
    """One STORE command's changes and replies, made step by step."""

    def __init__(self, session, view, flags, mode, unchanged_since, silent, uid):
        self.session, self.view = session, view
        self.flags, self.mode = flags, mode
        self.unchanged_since, self.silent, self.uid = unchanged_since, silent, uid
        self.changed: list = []
        self.refused: list[tuple[int, object]] = []  # (seq, message)
        self.gone = 0

    def step(self, selected) -> None:
        view = self.view
        targets = [(seq, m) for seq, m in selected if view.is_live(m)]
        self.gone += len(selected) - len(targets)
        before = {m.uid: m.modseq for _, m in targets}
        changed, refused = view.folder.store_flags(
            [m for _, m in targets], self.flags, self.mode, self.unchanged_since, source=view
        )
        self.changed.extend(changed)
        changed_uids = {m.uid for m in changed}
        refused_uids = {m.uid for m in refused}
        lines = view.new_keyword_lines(changed)
        for seq, m in targets:
            if m.uid in refused_uids:
                self.refused.append((seq, m))
                continue
            # RFC 3501 §6.4.6: FETCH FLAGS for each message unless .SILENT; RFC 7162 §3.1.3:
            # with UNCHANGEDSINCE, a changed message's new MODSEQ is reported even when silent.
            if not self.silent or (self.unchanged_since is not None and m.uid in changed_uids):
                if not self.silent or m.modseq != before.get(m.uid):
                    lines.append(view.flags_fetch(seq, m, with_uid=self.uid))
        self.session.send_many(lines)

    def outcome(self):
        session, view = self.session, self.view
        # $Junk / $NotJunk teach the user's junk filter (queued: this command does not wait).
        session.services.junk.after_store(
            session.mailbox, view.folder, self.changed, self.flags, self.mode
        )
        if self.gone:
            # A change to a message another session expunged (or moved) would be lost: say so
            # (RFC 2180 §4.2, RFC 5530) rather than answer OK.
            raise ImapNo("EXPUNGEISSUED", "Some messages were expunged by another session")
        if self.refused:
            nums = [m.uid if self.uid else seq for seq, m in self.refused]
            return (f"MODIFIED {format_sequence_set(nums)}", "Conditional STORE failed")
        return None


def store(session, cmd):
    return _store(session, cmd, uid=False)


def uid_store(session, cmd):
    return _store(session, cmd, uid=True)
