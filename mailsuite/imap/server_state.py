"""What the IMAP sessions of one server share about folders: who has seen which message as
\\Recent, when each folder was last checked against the disk, the poll of folders being
idled on, the STATUS counts and the memo of rendered FETCH items.

One `ImapState` is created per server by `Services` and handed to every session, so two
servers in one process (tests) never see each other's claims or clocks.  Folders are keys of
weak dictionaries: a folder nobody holds any more takes its entries with it.
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Callable, Iterator

from twisted.internet import defer, task
from twisted.logger import Logger

from mailsuite.imap.fetch_memo import RenderedMemo
from mailsuite.imap.literal import WirePositions

# Changes made inside this process reach the shared Folder at once; only other programs'
# changes need a directory check.  A check right after a flag change rescans the folder (the
# directory mtime moved), so IMAP asks for one at most once a second per folder.
REFRESH_INTERVAL = 0.9

# How often IDLE looks for changes made behind the process's back (a file dropped into new/).
IDLE_POLL_SECONDS = 1.0
# Memory for message bodies kept in wire form (what FETCH sends again without reading and
# converting the file); each is below literal.STREAM_FROM.
BODIES_BUDGET = 16 * 1024 * 1024

log = Logger(namespace="mailsuite.imap")


class ImapState:
    """Per-server IMAP state keyed by the store's shared Folder objects."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, submit: Callable | None = None):
        self._clock = clock
        # The durable pool's submit, where folder listings run; None: in the caller's thread
        # (the reactor-less session-machine tests).
        self._submit = submit
        # Folders being listed in the pool now, each with the Deferreds of the callers
        # that asked meanwhile.
        self._listing: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # \Recent (RFC 3501 §2.3.2.3) belongs to exactly one session: the first to see a
        # message.  The store does not keep it, so the server remembers, per folder, the
        # highest UID some session has already reported.  After a restart nothing is recent,
        # as with a fresh index.
        self._recent_claimed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._last_refresh: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # (unseen, deleted, size) per folder, recomputed only when \Seen or \Deleted changes
        # on some message or messages arrive or leave (iOS and Thunderbird poll STATUS of
        # every folder while other clients toggle \Flagged).
        self._counts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Answers of one-flag searches (UNSEEN, FLAGGED...) over a folder's whole message list,
        # which clients poll on every reconnect, per folder and search.
        self._flag_searches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.idle_poll = FolderPoll(self.refresh, IDLE_POLL_SECONDS)
        self.rendered = RenderedMemo()
        # Bodies below `literal.STREAM_FROM` in wire form, as FETCH sent them (fetch.py).
        self.bodies = RenderedMemo(BODIES_BUDGET)
        self.wire_positions = WirePositions()  # where streamed big bodies were (literal.py)

    # -- \Recent ----------------------------------------------------------------------------
    def claim_recent(self, folder) -> set[int]:
        """Take the messages no session has reported as \\Recent yet; return their UIDs."""
        recent = self.peek_recent(folder)
        if folder.messages:
            prev = self._recent_claimed.get(folder, 0)
            self._recent_claimed[folder] = max(prev, folder.messages[-1].uid)
        elif folder not in self._recent_claimed:
            self._recent_claimed[folder] = 0
        return recent

    def peek_recent(self, folder) -> set[int]:
        """The messages no session has reported as \\Recent yet, left unclaimed (EXAMINE,
        RFC 3501 §6.3.2: the read-only session sees \\Recent but does not take it).

        On the first sight of a folder since start, what sits in Maildir `new/` is recent (the
        Maildir meaning of `new/`, as Dovecot reads it) and so is whatever arrived while this
        process had the folder open; after that, whatever arrived since the last claim."""
        prev = self._recent_claimed.get(folder)
        if prev is None:
            mark = folder.uid_at_open
            return {m.uid for m in folder.messages if m.is_new or m.uid > mark}
        return set(_uids_above(folder, prev))

    def recent_count(self, folder) -> int:
        """RECENT for STATUS: messages no session has reported yet."""
        return len(self.peek_recent(folder))

    # -- disk checks ------------------------------------------------------------------------
    def refresh(self, folder, force: bool = False) -> defer.Deferred | None:
        """Sync `folder` with the disk unless that was done within REFRESH_INTERVAL.  None
        when that took no listing (three stats said nothing changed); else a Deferred that
        fires once the listing, made in the durable pool, is in the index."""
        now = self._clock()
        if not force and now - self._last_refresh.get(folder, -1e9) < REFRESH_INTERVAL:
            return None
        if not force and folder.file_ops_pending:
            # Our own renames and unlinks are under way (the index has them already): a
            # listing would wait for them all (a 40,000-message EXPUNGE: seconds) to tell
            # only what other programs did; a later poll asks again.
            return None
        self._last_refresh[folder] = now
        if self._submit is None:
            folder.refresh()
            return None
        waiting = self._listing.get(folder)
        if waiting is not None:
            # A listing begun before this call may have missed what the caller wants to see:
            # another follows it when the directories say so.
            d = defer.Deferred()
            waiting.append(d)
            return d
        if not folder.needs_listing():
            return None
        return self._list(folder)

    def _list(self, folder) -> defer.Deferred:
        waiting = self._listing[folder] = []

        def applied(listing) -> None:
            folder.apply_listing(listing)

        def failed(failure) -> None:
            if not failure.check(OSError):
                log.failure("listing {name} failed", failure, name=folder.name)

        def done(_) -> None:
            self._listing.pop(folder, None)
            if not waiting:
                return None
            again = self._list(folder) if folder.needs_listing() else None
            for d in waiting:
                if again is None:
                    d.callback(None)
                else:
                    again.addBoth(_fire, d)
            return again

        d = folder.listing_after_ops(self._submit)
        d.addCallbacks(applied, failed)
        d.addCallback(done)
        return d

    # -- searches ---------------------------------------------------------------------------
    def flag_search(self, folder, search: tuple, stamp: tuple, compute: Callable[[], list]) -> list:
        """`compute()`'s (seq, msg) hits of the one-flag `search` over `folder.messages`, kept
        until `stamp` (what the answer depends on: that flag's changes, arrivals, expunges)
        moves."""
        memo = self._flag_searches.setdefault(folder, {})
        hit = memo.get(search)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        hits = compute()
        memo[search] = (stamp, hits)
        return hits

    # -- STATUS -----------------------------------------------------------------------------
    def status_counts(self, folder) -> tuple[int, int, int]:
        """(unseen, deleted, total wire size) of `folder`, remembered until they can change."""
        v = folder.flag_versions
        stamp = (v["S"], v["T"], folder.membership_version, len(folder.messages))
        hit = self._counts.get(folder)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        unseen = deleted = size = 0
        for m in folder.messages:
            flags = m.flags
            if "\\Seen" not in flags:
                unseen += 1
            if "\\Deleted" in flags:
                deleted += 1
            size += m.wire_size
        self._counts[folder] = (stamp, (unseen, deleted, size))
        return unseen, deleted, size


def _fire(result, d: defer.Deferred):
    d.callback(None)
    return result


class FolderPoll:
    """One LoopingCall refreshing every folder that some session idles on (RFC 2177): changes
    made inside the process arrive as folder events, this catches the others."""

    def __init__(self, refresh: Callable, seconds: float):
        self._refresh = refresh
        self._seconds = seconds
        self.folders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.loop: task.LoopingCall | None = None

    def add(self, folder) -> None:
        self.folders[folder] = self.folders.get(folder, 0) + 1
        if self.loop is None:
            self.loop = task.LoopingCall(self._tick)
            self.loop.start(self._seconds, now=False)

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

    def _tick(self) -> defer.Deferred | None:
        """One poll; the LoopingCall waits for the listings it made (in the durable pool)."""
        listings = []
        for folder in list(self.folders.keys()):
            try:
                listed = self._refresh(folder)
            except OSError:
                continue
            if listed is not None:
                listings.append(listed)
        if not listings:
            return None
        return defer.DeferredList(listings, consumeErrors=True)


def _uids_above(folder, uid: int) -> Iterator[int]:
    i = bisect.bisect_right(folder.messages, uid, key=lambda m: m.uid)
    return (m.uid for m in folder.messages[i:])
