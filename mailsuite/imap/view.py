"""One session's view of its selected folder (RFC 3501 §2.3.1.2): the messages as this client
knows them, with its own sequence numbers, and the untagged updates owed to it.

The store keeps one shared `Folder` per folder; every session that selects it holds a
`SelectedView`.  Changes made by other sessions, POP3 or delivery arrive as folder events and
are queued here; they reach the client only where RFC 3501 allows (§5.2, §7.4.1): EXPUNGE never
during FETCH/STORE/SEARCH, and a sequence number never shifts under a command's feet.
"""

from __future__ import annotations

import bisect

from mailsuite.imap import response as R
from mailsuite.imap.contexts import UpdatingSearches
from mailsuite.imap.parser import ImapBad
from mailsuite.imap.sequence import SequenceSet, format_sequence_set

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


_WITH_RECENT: dict[frozenset[str], frozenset[str]] = {}


def _with_recent(flags: frozenset[str]) -> frozenset[str]:
    """`flags` plus \\Recent, one shared set per combination: a new set per message would be
    hashed again by every lookup that follows (flag_list, the keyword check)."""
    out = _WITH_RECENT.get(flags)
    if out is None:
        if len(_WITH_RECENT) > 4096:
            _WITH_RECENT.clear()
        out = _WITH_RECENT[flags] = flags | {"\\Recent"}
    return out


def _uid_of(msg) -> int:
    return msg.uid


class SelectedView:
    """One session's view of a selected folder (RFC 3501 §2.3.1.2 sequence numbers)."""

    def __init__(self, session, folder, readonly: bool):
        self.session = session
        self.folder = folder
        self.readonly = readonly
        self.messages: list = list(folder.messages)
        state = session.imap_state
        self.recent: set[int] = (
            state.peek_recent(folder) if readonly else state.claim_recent(folder)
        )
        # Keywords announced in FLAGS/PERMANENTFLAGS; anything a message shows beyond these
        # (and \Recent) must be announced before the FETCH that shows it.
        self.keywords: set[str] = {
            f for f in set().union(*(m.flags for m in self.messages)) if not f.startswith("\\")
        }
        self._announced = frozenset(self.keywords) | frozenset(SYSTEM_FLAGS) | {"\\Recent"}
        self.pending_expunge: set[int] = set()
        self.pending_flags: set[int] = set()
        self.pending_exists = False
        self.flag_search_memo = None  # see commands/search.py _flag_only
        self.fetch_plans: dict = {}  # compiled FETCH requests, see commands/fetch.py
        # RFC 5267 §4.3: searches that report their changes; they see every event, ours too.
        self.contexts = UpdatingSearches(self)
        folder.add_listener(self.on_event)

    def close(self) -> None:
        self.folder.remove_listener(self.on_event)
        self.contexts.close()

    # -- folder events ----------------------------------------------------------------------
    def on_event(self, event) -> None:
        self.contexts.on_event(event)
        if event.source is self:
            return  # our own change: the command answers for it itself
        if event.kind == "exists":
            self.pending_exists = True
        elif event.kind == "flags":
            self.pending_flags.update(event.uids)
        elif event.kind == "expunge":
            self.pending_expunge.update(event.uids)
        self.session.folder_changed()

    @property
    def has_pending(self) -> bool:
        return bool(self.pending_exists or self.pending_flags or self.pending_expunge)

    # -- numbering --------------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.messages)

    def seq_of_uid(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.messages, uid, key=lambda m: m.uid)
        if i < len(self.messages) and self.messages[i].uid == uid:
            return i + 1
        return None

    def is_live(self, msg) -> bool:
        """False once another session or program expunged it (still numbered here).

        Every expunge not made by this session arrives as an event into pending_expunge, so
        with none pending every message of the view is live (no lookup per message)."""
        return not self.pending_expunge or self.folder.by_uid(msg.uid) is msg

    def select(self, seqset: SequenceSet, uid: bool) -> list[tuple[int, object]]:
        """(seq, msg) pairs in this view for a sequence or UID set (RFC 3501 §6.4.8)."""
        msgs = self.messages
        if seqset.dollar:
            saved = set(self.session.saved_uids)
            return [(i + 1, m) for i, m in enumerate(msgs) if m.uid in saved]
        if not msgs:
            return []
        out: list[tuple[int, object]] = []
        if not uid:
            n = len(msgs)
            ranges = seqset.ranges
            if len(ranges) == 1:
                lo, hi = ranges[0]
                if lo == hi and lo is not None and lo >= 1:
                    # One message, what a client reading messages one by one asks for.
                    return [(lo, msgs[lo - 1])] if lo <= n else []
            for lo, hi in seqset.resolve(n):
                if lo > n:
                    continue
                hi = min(hi, n)
                out.extend(zip(range(lo, hi + 1), msgs[lo - 1 : hi], strict=True))
            return out
        for lo, hi in seqset.resolve(msgs[-1].uid):
            i = bisect.bisect_left(msgs, lo, key=_uid_of)
            j = bisect.bisect_right(msgs, hi, key=_uid_of)
            out.extend(zip(range(i + 1, j + 1), msgs[i:j], strict=True))
        return out

    def check_seqset(self, seqset: SequenceSet, uid: bool) -> None:
        """RFC 3501 §9: a message sequence number beyond EXISTS is an error (not for UIDs).

        A range is accepted when it starts inside the mailbox ("1:1000" on 10 messages), as
        Dovecot does, and so is any range with "*"; a range wholly beyond the end is BAD."""
        if uid or seqset.dollar:
            return
        n = len(self.messages)
        for lo, hi in seqset.ranges:
            if lo is None or hi is None:
                # "n:*" is "*:n" (RFC 3501 §9): it names the last message whatever n is,
                # and nothing in an empty mailbox.
                continue
            if min(lo, hi) > n:
                raise ImapBad("Invalid message sequence number")

    def flags_of(self, msg) -> frozenset[str]:
        # RFC 9051 appendix E: IMAP4rev2 has no \Recent
        if msg.uid in self.recent and not self.session.rev2:
            return _with_recent(msg.flags)
        return msg.flags

    def flags_column(self, msgs: list) -> list[frozenset[str]]:
        """`flags_of` for many messages at once (FETCH FLAGS of a whole mailbox)."""
        recent = self.recent
        if not recent or self.session.rev2:
            return [m.flags for m in msgs]
        return [_with_recent(m.flags) if m.uid in recent else m.flags for m in msgs]

    # -- flags announced -------------------------------------------------------------------
    def flag_lines(self) -> list[bytes]:
        """`* FLAGS` and `* OK [PERMANENTFLAGS]` for the flags in use (RFC 3501 §7.2.6)."""
        flags = list(SYSTEM_FLAGS) + sorted(self.keywords)
        out = [b"* FLAGS (" + " ".join(flags).encode() + b")\r\n"]
        if self.readonly:
            out.append(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
        else:
            # RFC 3501 §7.1: \* promises that new keywords can be created; once the folder's
            # keyword table is full they cannot, and a STORE of one is ignored (§7.1 allows it).
            room = [] if self.folder.keywords.full() else ["\\*"]
            perm = " ".join(flags + room)
            out.append(f"* OK [PERMANENTFLAGS ({perm})] Flags permitted\r\n".encode())
        return out

    def new_keyword_lines(self, msgs) -> list[bytes]:
        """FLAGS/PERMANENTFLAGS again when one of `msgs` shows a keyword the client has not
        been told of yet (RFC 3501 §7.2.6: before the FETCH that shows it); else nothing."""
        known = self._announced
        new = set()
        # Few distinct flag sets in a mailbox: test each once.
        for flags in {m.flags for m in msgs}:
            if not flags <= known:
                new.update(f for f in flags - known if not f.startswith("\\"))
        if not new:
            return []
        self.keywords |= new
        self._announced = known | new
        return self.flag_lines()

    # -- updates ----------------------------------------------------------------------------
    def has_updates(self, expunge_ok: bool) -> bool:
        """Whether `drain_updates` has anything to say (asked after every command, so that
        the usual answer, nothing, costs no list)."""
        return bool(
            (expunge_ok and self.pending_expunge)
            or self.pending_exists
            or self.pending_flags
            or self.contexts.searches
        )

    def drain_updates(self, expunge_ok: bool) -> list[bytes]:
        """Untagged EXPUNGE/VANISHED, EXISTS/RECENT and FETCH lines owed to the client."""
        out: list[bytes] = []
        if expunge_ok and self.pending_expunge:
            out.extend(self.remove_expunged(self.pending_expunge))
            self.pending_expunge = set()
        if self.pending_exists:
            self.pending_exists = False
            last = self.messages[-1].uid if self.messages else 0
            fresh = [
                m for m in self.folder.messages[self._folder_index_after(last) :] if m.uid > last
            ]
            if fresh:
                self.messages.extend(fresh)
                state = self.session.imap_state
                unclaimed = (
                    state.peek_recent(self.folder)
                    if self.readonly
                    else state.claim_recent(self.folder)
                )
                self.recent.update(unclaimed & {m.uid for m in fresh})
                out.append(b"* %d EXISTS\r\n" % len(self.messages))
                if not self.session.rev2:
                    out.append(b"* %d RECENT\r\n" % len(self.recent))
        if self.pending_flags:
            uids = sorted(self.pending_flags)
            self.pending_flags = set()
            changed = []
            for uid in uids:
                seq = self.seq_of_uid(uid)
                if seq is None:
                    continue
                msg = self.messages[seq - 1]
                if self.is_live(msg):
                    changed.append((seq, msg))
            out.extend(self.new_keyword_lines(m for _, m in changed))
            out.extend(self.flags_fetch(seq, msg) for seq, msg in changed)
        # RFC 5267 §4.3.2: ADDTO/REMOVEFROM with the FETCH/EXISTS that caused them.
        out.extend(self.contexts.drain())
        return out

    def _folder_index_after(self, uid: int) -> int:
        return bisect.bisect_right(self.folder.messages, uid, key=lambda m: m.uid)

    def flags_fetch(self, seq: int, msg, with_uid: bool = True) -> bytes:
        """`* n FETCH (UID u FLAGS (...) MODSEQ (m))` (RFC 7162 §3.2.4 wants UID with QRESYNC)."""
        parts = []
        if with_uid or self.session.qresync:
            parts.append(b"UID %d" % msg.uid)
        parts.append(b"FLAGS " + R.flag_list(self.flags_of(msg)))
        if self.session.condstore:
            parts.append(b"MODSEQ (%d)" % msg.modseq)
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))

    def remove_expunged(self, uids) -> list[bytes]:
        """Drop messages from the view; EXPUNGE lines (or one VANISHED with QRESYNC)."""
        uids = set(uids)
        # RFC 5267 §4.3.4: REMOVEFROM before the EXPUNGE, while its numbers are valid.
        out: list[bytes] = self.contexts.expunged(uids)
        if self.session.qresync:
            gone = [m.uid for m in self.messages if m.uid in uids]
            if gone:
                self.messages = [m for m in self.messages if m.uid not in uids]
                # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled.
                out.append(b"* VANISHED " + format_sequence_set(gone).encode() + b"\r\n")
        else:
            # Highest number first: each line's number stays valid as the client applies it.
            # One pass and one new list: deleting from the list one message at a time moves
            # its tail each time (quadratic: 20,000 expunged of 50,000 took 0.3 s).
            messages = self.messages
            out.extend(
                b"* %d EXPUNGE\r\n" % (i + 1)
                for i in range(len(messages) - 1, -1, -1)
                if messages[i].uid in uids
            )
            self.messages = [m for m in messages if m.uid not in uids]
        self.recent -= uids
        self.pending_flags -= uids
        return out
