"""Updating searches (RFC 5267 §4.3, CONTEXT=SEARCH and CONTEXT=SORT): a SEARCH or SORT with
RETURN (UPDATE) is remembered by its tag, and as messages arrive, leave or change flags the
client is told how its result changed with `* ESEARCH (TAG "t") ADDTO (...)` and
`REMOVEFROM (...)`.

Each updating search keeps its result in the requested order (UIDs with their order keys),
so a change costs the evaluation of the changed messages only: a flag change on one message
of a 10,000-message mailbox tests that one message, never the mailbox.  An expunged result is
removed without evaluating anything.  Programs that read message text (header or body keys,
SORT keys other than ARRIVAL and SIZE) are evaluated in the thread pool, one batch at a time
per view; their answers are reported at the next point where the view reports updates.

The selected view owns one `UpdatingSearches`; it forwards every folder event (`on_event`),
asks for REMOVEFROM lines before it sends EXPUNGE (`expunged`), and for the rest at the end of
every update it sends (`drain`).  Updates cease when the mailbox is deselected or the client
sends CANCELUPDATE (RFC 5267 §4.3).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet import threads
from twisted.logger import Logger

from mailsuite.imap import search as search_mod
from mailsuite.imap.parser import ImapBad

log = Logger()


@dataclass(eq=False)
class UpdatingSearch:
    """One remembered search: its tag, program, numbering and current result.

    `key_of(msg, loader)` gives a message's place in the requested order (its UID for SEARCH,
    the SORT criteria then the UID for SORT); `needs_thread` says evaluating a message or its
    key reads message text.  `evaluations` counts messages tested since creation."""

    tag: str
    uid: bool
    program: search_mod.SearchProgram
    key_of: Callable
    needs_thread: bool
    installed: bool = False
    order: list = field(default_factory=list)  # [(key, uid)] in the requested order
    members: dict = field(default_factory=dict)  # uid -> key
    evaluations: int = 0

    def install(self, keyed: list[tuple]) -> None:
        """The result the client was sent: `(key, uid)` pairs in the requested order."""
        self.order = list(keyed)
        self.members = {uid: key for key, uid in keyed}
        self.installed = True

    def insert(self, uid: int, key) -> int:
        """Add a result; its 1-based context position."""
        i = bisect.bisect_left(self.order, (key, uid))
        self.order.insert(i, (key, uid))
        self.members[uid] = key
        return i + 1

    def remove(self, uid: int) -> int:
        """Drop a result; the 1-based context position it had."""
        key = self.members.pop(uid)
        i = bisect.bisect_left(self.order, (key, uid))
        del self.order[i]
        return i + 1

    def position_of(self, uid: int) -> int:
        key = self.members[uid]
        return bisect.bisect_left(self.order, (key, uid)) + 1


class UpdatingSearches:
    """The updating searches of one selected view, and the changes they still owe."""

    def __init__(self, view):
        self.view = view
        self.searches: dict[str, UpdatingSearch] = {}
        self.dirty: set[int] = set()  # UIDs arrived or changed, not yet evaluated
        self.gone: set[int] = set()  # UIDs expunged, not yet reported
        self.answers: list[tuple[UpdatingSearch, dict]] = []  # thread results to report
        self._pending: list[tuple[list, list]] = []  # thread batches waiting their turn
        self._running = False  # a thread batch is out
        self._closed = False

    # -- the searching commands ---------------------------------------------------------
    def has(self, tag: str) -> bool:
        return tag in self.searches

    def begin(
        self, tag: str, uid: bool, program, messages, key_of: Callable, needs_thread: bool
    ) -> UpdatingSearch | None:
        """A searching command with RETURN (UPDATE) starts: remembered from now on, so that
        changes made while it runs are reported after its result.  ImapBad when the tag
        names a live updating search (RFC 5267 §4.3); None, with `* NO [NOUPDATE "tag"]`
        sent, when the session has as many as it may (§4.3.1: the other return options are
        still answered)."""
        if tag in self.searches:
            raise ImapBad("Tag reuse: an updating search already has this tag")
        session = self.view.session
        ctx = search_mod.SearchContext(saved_uids=list(session.saved_uids or ()))
        frozen = search_mod.freeze_numbers(program, messages, ctx)
        search = UpdatingSearch(tag, uid, frozen, key_of, needs_thread)
        if len(self.searches) >= max(self.limit, 1):
            # RFC 5267 §6: contexts cost the server; a refusal is worth a line in the log.
            log.info(
                "imap updating search refused for {user}: {n} already",
                user=session.user,
                n=len(self.searches),
            )
            session.send(
                b'* NO [NOUPDATE "'
                + tag.encode("ascii", "replace")
                + b'"] Too many updating searches; cancel one with CANCELUPDATE\r\n'
            )
            return None
        self.searches[tag] = search
        return search

    @property
    def limit(self) -> int:
        return self.view.session.config.imap.max_updating_searches

    def drop(self, tag: str) -> None:
        """CANCELUPDATE (RFC 5267 §4.3.5), or the searching command failed."""
        self.searches.pop(tag, None)
        if not self.searches:
            self.dirty.clear()
            self.gone.clear()
            self.answers.clear()

    def close(self) -> None:
        """The view is closing: no more updates, and no reference back to it (the view,
        its session and this object are freed at once, not by the cycle collector)."""
        self._closed = True
        self.searches.clear()
        self._pending.clear()
        self.answers.clear()
        self.view = None

    # -- folder events ------------------------------------------------------------------
    def on_event(self, event) -> None:
        if not self.searches:
            return
        if event.kind == "expunge":
            self.gone.update(event.uids)
        else:  # "exists" or "flags", from any session including this one
            self.dirty.update(event.uids)

    # -- updates out --------------------------------------------------------------------
    def expunged(self, uids) -> list[bytes]:
        """REMOVEFROM for results among `uids`, while their sequence numbers are still
        valid: RFC 5267 §4.3.4 wants it before the EXPUNGE."""
        if not self.searches:
            return []
        uids = set(uids)
        self.gone -= uids
        self.dirty -= uids
        out = []
        for s in self._installed():
            gone = sorted((u for u in uids if u in s.members), key=s.position_of)
            if gone:
                out.append(self._removals(s, gone))
        return out

    def drain(self) -> list[bytes]:
        """ADDTO/REMOVEFROM owed now: expunged results (before their EXPUNGE may be sent:
        RFC 5267 §4.3.4 allows it at any time), thread answers that came back, and the
        changed messages of index-only searches evaluated here."""
        if not self.searches:
            return []
        out = self.expunged(self.gone) if self.gone else []
        answers, self.answers = self.answers, []
        for s, verdicts in answers:
            if self.searches.get(s.tag) is s:
                out.extend(self._apply(s, verdicts))
        if not self.dirty:
            return out
        view = self.view
        last = view.messages[-1].uid if view.messages else 0
        # A message is evaluated once the client has been told it exists (RFC 5267 §4.3.3:
        # an ADDTO follows the EXISTS); later arrivals wait for the next drain.
        ready = sorted(u for u in self.dirty if u <= last)
        self.dirty -= set(ready)
        msgs = [m for m in map(view.folder.by_uid, ready) if m is not None]
        if not msgs:
            return out
        searches = list(self._installed())
        for s in searches:
            if not s.needs_thread:
                out.extend(self._apply(s, self._verdicts(s, msgs, None, view.recent)))
        threaded = [s for s in searches if s.needs_thread]
        if threaded:
            self._queue(threaded, msgs)
        return out

    # -- evaluation ---------------------------------------------------------------------
    def _installed(self):
        return [s for s in self.searches.values() if s.installed]

    @staticmethod
    def _verdicts(s: UpdatingSearch, msgs, loader, recent: set[int]) -> dict:
        """uid -> order key for the messages of `msgs` that match, None for the others."""
        ctx = search_mod.SearchContext(content_loader=loader, recent_uids=recent)
        hits = {m.uid for m in search_mod.evaluate(s.program, msgs, ctx)}
        s.evaluations += len(msgs)
        return {m.uid: (s.key_of(m, loader) if m.uid in hits else None) for m in msgs}

    def _queue(self, searches, msgs) -> None:
        """Evaluate in the thread pool, one batch at a time, so that answers are applied in
        the order the changes happened."""
        self._pending.append((searches, msgs))
        if not self._running:
            self._next_batch()

    def _next_batch(self) -> None:
        if self._closed or not self._pending:
            self._running = False
            return
        searches, msgs = self._pending.pop(0)
        self._running = True
        folder = self.view.folder
        loader = folder.parsed_loader(in_thread=True)
        recent = set(self.view.recent)  # copied here: the reactor changes the view's set

        def work():
            verdicts = [(s, self._verdicts(s, msgs, loader, recent)) for s in searches]
            folder.parsed_cache.flush()  # SQLite writes stay off the reactor, as for SORT
            return verdicts

        def done(results):
            if self._closed:
                return
            self.answers.extend(results)
            self._next_batch()
            # IDLE reports at once; otherwise the next command's updates carry it.
            self.view.session.folder_changed()

        def failed(failure):
            log.failure("updating search evaluation failed", failure=failure)
            if not self._closed:
                self._next_batch()

        threads.deferToThread(work).addCallbacks(done, failed)

    def _apply(self, s: UpdatingSearch, verdicts: dict) -> list[bytes]:
        """Compare each verdict with the current result: REMOVEFROM for those that left,
        then ADDTO for those that entered (RFC 5267 §4.3.2: processed in order)."""
        view = self.view
        leaving = [u for u, k in verdicts.items() if k is None and u in s.members]
        entering = [
            (k, u)
            for u, k in verdicts.items()
            if k is not None and u not in s.members and view.folder.by_uid(u) is not None
        ]
        out = []
        if leaving:
            out.append(self._removals(s, sorted(leaving, key=s.position_of)))
        if entering:
            runs: list[tuple[int, list[int]]] = []
            for key, uid in sorted(entering):
                pos = s.insert(uid, key)
                n = self._number(s, uid)
                if runs and pos == runs[-1][0] + len(runs[-1][1]):
                    runs[-1][1].append(n)
                else:
                    runs.append((pos, [n]))
            out.append(search_mod.format_context_update(s.tag, s.uid, "ADDTO", runs))
        return out

    def _removals(self, s: UpdatingSearch, uids: list[int]) -> bytes:
        """REMOVEFROM for `uids` (in the requested order), removed one by one so that each
        position is the one the client sees at that point."""
        runs: list[tuple[int, list[int]]] = []
        for uid in uids:
            n = self._number(s, uid)
            pos = s.remove(uid)
            if runs and pos == runs[-1][0]:
                runs[-1][1].append(n)
            else:
                runs.append((pos, [n]))
        return search_mod.format_context_update(s.tag, s.uid, "REMOVEFROM", runs)

    def _number(self, s: UpdatingSearch, uid: int) -> int:
        # RFC 5267 §4.3.2: UIDs for UID SEARCH/SORT, message numbers otherwise.
        return uid if s.uid else (self.view.seq_of_uid(uid) or 0)
