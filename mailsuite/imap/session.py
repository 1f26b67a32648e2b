"""IMAP session state: the connection's state (RFC 3501 §3), its selected-folder view with
its own message sequence numbers, and the untagged updates owed to the client.

The store keeps one shared `Folder` per folder; every session that selects it holds a
`SelectedView`: the list of messages *as this client knows them*.  Changes made by other
sessions, POP3 or delivery arrive as folder events and are queued here; they reach the client
only where RFC 3501 allows (§5.2, §7.4.1): EXPUNGE never during FETCH/STORE/SEARCH, and a
sequence number never shifts under a command's feet.
"""

from __future__ import annotations

import bisect
import time
import weakref

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.imap import response as R
from mailsuite.imap.commands import (
    ALREADY_ANSWERED,
    AUTHENTICATED,
    COMMANDS,
    NOT_AUTHENTICATED,
    SELECTED,
    load_all,
)
from mailsuite.imap.parser import Command, ImapBad, ImapBye, ImapError, ImapNo
from mailsuite.imap.sequence import SequenceSet, format_sequence_set

log = Logger(namespace="mailsuite.imap")

# \Recent (RFC 3501 §2.3.2.3) belongs to exactly one session: the first to see a message.
# The store does not keep it, so the process remembers, per shared Folder, the highest UID
# some session has already reported.  After a restart nothing is recent, as with a fresh index.
_recent_claimed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def claim_recent(folder) -> set[int]:
    """Take the messages no session has reported as \\Recent yet; return their UIDs.

    On the first sight of a folder since start, what sits in Maildir `new/` is recent (the
    Maildir meaning of `new/`, as Dovecot reads it); after that, whatever arrived since."""
    last = folder.messages[-1].uid if folder.messages else 0
    prev = _recent_claimed.get(folder)
    _recent_claimed[folder] = last if prev is None else max(prev, last)
    if prev is None:
        return {m.uid for m in folder.messages if m.is_new}
    return set(_uids_above(folder, prev))


def recent_count(folder) -> int:
    """RECENT for STATUS: messages no session has reported yet."""
    mark = _recent_claimed.get(folder)
    if mark is None:
        return sum(1 for m in folder.messages if m.is_new)
    return sum(1 for _ in _uids_above(folder, mark))


# Changes made inside this process reach the shared Folder at once; only other programs'
# changes need a directory check.  A check right after a flag change rescans the folder (the
# directory mtime moved), so IMAP asks for one at most once a second per folder.
REFRESH_INTERVAL = 0.9
_last_refresh: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def refresh_folder(folder, force: bool = False) -> None:
    """Sync `folder` with the disk unless that was done within REFRESH_INTERVAL."""
    now = time.monotonic()
    if not force and now - _last_refresh.get(folder, -1e9) < REFRESH_INTERVAL:
        return
    _last_refresh[folder] = now
    folder.refresh()


def _uids_above(folder, uid: int):
    i = bisect.bisect_right(folder.messages, uid, key=lambda m: m.uid)
    return (m.uid for m in folder.messages[i:])


class SelectedView:
    """One session's view of a selected folder (RFC 3501 §2.3.1.2 sequence numbers)."""

    def __init__(self, session: Session, folder, readonly: bool):
        self.session = session
        self.folder = folder
        self.readonly = readonly
        self.messages: list = list(folder.messages)
        self.recent: set[int] = set()
        if not readonly:
            self.recent = claim_recent(folder)
        self.pending_expunge: set[int] = set()
        self.pending_flags: set[int] = set()
        self.pending_exists = False
        self.flag_search_memo = None  # see commands/search.py _flag_only
        folder.add_listener(self.on_event)

    def close(self) -> None:
        self.folder.remove_listener(self.on_event)

    # -- folder events ----------------------------------------------------------------------
    def on_event(self, event) -> None:
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
            for lo, hi in seqset.resolve(n):
                if lo > n:
                    continue
                out.extend((i, msgs[i - 1]) for i in range(lo, min(hi, n) + 1))
            return out
        for lo, hi in seqset.resolve(msgs[-1].uid):
            i = bisect.bisect_left(msgs, lo, key=lambda m: m.uid)
            j = bisect.bisect_right(msgs, hi, key=lambda m: m.uid)
            out.extend((k + 1, msgs[k]) for k in range(i, j))
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
        if msg.uid in self.recent:
            return msg.flags | {"\\Recent"}
        return msg.flags

    # -- updates ----------------------------------------------------------------------------
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
                if not self.readonly:
                    fresh_uids = {m.uid for m in fresh}
                    self.recent.update(claim_recent(self.folder) & fresh_uids)
                out.append(b"* %d EXISTS\r\n" % len(self.messages))
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        if self.pending_flags:
            uids = sorted(self.pending_flags)
            self.pending_flags = set()
            for uid in uids:
                seq = self.seq_of_uid(uid)
                if seq is None:
                    continue
                msg = self.messages[seq - 1]
                if not self.is_live(msg):
                    continue
                out.append(self.flags_fetch(seq, msg))
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
        out: list[bytes] = []
        if self.session.qresync:
            gone = [m.uid for m in self.messages if m.uid in uids]
            if gone:
                self.messages = [m for m in self.messages if m.uid not in uids]
                # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled.
                out.append(b"* VANISHED " + format_sequence_set(gone).encode() + b"\r\n")
        else:
            # Highest number first: each line's number stays valid as the client applies it.
            for i in range(len(self.messages) - 1, -1, -1):
                if self.messages[i].uid in uids:
                    out.append(b"* %d EXPUNGE\r\n" % (i + 1))
                    del self.messages[i]
        self.recent -= uids
        self.pending_flags -= uids
        return out


class Session:
    """Per-connection state and the one place where results become tagged replies."""

    def __init__(self, services, protocol, kind: str, client_ip: str):
        load_all()
        self.services = services
        self.config = services.config
        self.protocol = protocol
        self.kind = kind
        self.client_ip = client_ip
        self.state = NOT_AUTHENTICATED
        self.user: str | None = None
        self.mailbox = None
        self.view: SelectedView | None = None
        self.enabled: set[str] = set()
        self.saved_uids: list[int] = []
        self.line_handler = None  # sub-dialogue (AUTHENTICATE, IDLE) takes raw lines
        self.idling = None  # the IDLE command's state while idling
        self.compressed = False
        self.bad_commands = 0
        self.current = None
        self._out: list[bytes] = []
        self._out_size = 0

    # -- properties ---------------------------------------------------------------------------
    @property
    def secure(self) -> bool:
        return self.protocol.is_secure()

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def utf8(self) -> bool:
        return "UTF8=ACCEPT" in self.enabled

    def plaintext_allowed(self) -> bool:
        """Password logins in the clear: only over TLS unless policy allows loopback."""
        if self.secure:
            return True
        if self.config.auth.plaintext == "loopback":
            return self.client_ip.startswith("127.") or self.client_ip == "::1"
        return False

    def capabilities(self) -> list[str]:
        from mailsuite.imap.commands.misc import capabilities

        return capabilities(self)

    # -- output -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= 65536:
            self.flush()

    def send_many(self, lines: list[bytes]) -> None:
        for line in lines:
            self.send(line)

    def flush(self) -> None:
        if self._out:
            out, self._out, self._out_size = self._out, [], 0
            self.protocol.write_sequence(out)

    def drain(self) -> defer.Deferred:
        """Fires once the transport wants more data (back-pressure for big responses)."""
        self.flush()
        return self.protocol.wait_writable()

    def send_updates(self, expunge_ok: bool = True) -> None:
        if self.view is not None:
            self.send_many(self.view.drain_updates(expunge_ok))

    def folder_changed(self) -> None:
        """A folder event arrived; IDLE delivers it at once (RFC 2177)."""
        if self.idling is not None:
            self.idling.wake()

    # -- state changes ------------------------------------------------------------------------
    def select(self, folder, readonly: bool) -> SelectedView:
        self.deselect()
        self.view = SelectedView(self, folder, readonly)
        self.state = SELECTED
        self.saved_uids = []
        return self.view

    def deselect(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.state == SELECTED:
            self.state = AUTHENTICATED
        self.saved_uids = []

    def logged_in(self, address: str) -> None:
        self.user = address
        self.mailbox = self.services.store.mailbox(address)
        self.state = AUTHENTICATED

    def close(self) -> None:
        self.deselect()
        if self.idling is not None:
            self.idling.stop()
            self.idling = None

    # -- running commands ---------------------------------------------------------------------
    def run(self, cmd: Command) -> defer.Deferred | None:
        """Run one command; returns a Deferred when it completes later, else None."""
        spec = COMMANDS.get(cmd.name)
        self.current = cmd
        try:
            if spec is None:
                raise ImapBad("Unknown command " + cmd.name[:40])
            if self.state not in spec.states:
                raise ImapBad(f"{cmd.name} not allowed in the {self.state} state")
            result = spec.handler(self, cmd)
        except Exception as e:
            self._finish_error(cmd, e)
            return None
        if isinstance(result, defer.Deferred):
            d = result
            d.addCallback(lambda r: self._finish_ok(cmd, spec, r))
            d.addErrback(lambda f: self._finish_error(cmd, f.value))
            return d
        self._finish_ok(cmd, spec, result)
        return None

    def _finish_ok(self, cmd: Command, spec, result) -> None:
        if self.state == "logout" or result is ALREADY_ANSWERED:
            self.flush()
            return
        self.send_updates(spec.expunge_ok)
        code = None
        text = f"{cmd.name} completed"
        if isinstance(result, tuple):
            code, text = result
        elif isinstance(result, str):
            text = result
        self.send(R.tagged(cmd.tag, "OK", text, code))
        self.flush()
        self.bad_commands = 0 if cmd.name != "NOOP" else self.bad_commands

    def _finish_error(self, cmd: Command, error: BaseException) -> None:
        if isinstance(error, ImapBye):
            self.send(R.untagged(f"BYE {error.text}"))
            self.flush()
            self.protocol.close()
            return
        if not isinstance(error, ImapError):
            log.failure(
                "IMAP command {name} failed",
                failure=_failure(error),
                name=cmd.name,
            )
            error = ImapNo("SERVERBUG", "Internal error, see the server log")
        self.send_updates(expunge_ok=False)
        self.send(R.tagged(cmd.tag, error.status, error.text, error.code))
        self.flush()
        if isinstance(error, ImapBad):
            log.info(
                "imap BAD {name} from {ip}: {text}",
                name=cmd.name,
                ip=self.client_ip,
                text=error.text,
            )
            self.note_bad()

    def reject(self, tag: str, error: ImapError) -> None:
        """A command refused by the reader (syntax, size) before it could run."""
        self.send(R.tagged(tag, error.status, error.text, error.code))
        self.flush()
        if isinstance(error, ImapBad):
            log.info("imap BAD input from {ip}: {text}", ip=self.client_ip, text=error.text)
            self.note_bad()

    def note_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.config.limits.bad_commands:
            self.send(R.untagged("BYE Too many invalid commands"))
            self.flush()
            self.protocol.close()


def _failure(error: BaseException):
    from twisted.python.failure import Failure

    return Failure(error, type(error), error.__traceback__)
