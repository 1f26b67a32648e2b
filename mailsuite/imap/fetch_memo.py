"""Rendered FETCH items per message (ENVELOPE, BODY, BODYSTRUCTURE, top-level
HEADER.FIELDS[.NOT] extracts), kept in memory under a byte budget.

Why: clients page through whole mailboxes asking the same items again on every connect, and
turning parse results into IMAP wire bytes costs more than the rest of such a FETCH.  A
message file never changes under its key, so (Maildir, key, size, item) names the bytes for
good (the Maildir because another mailbox may hold a file of the same name and size); one memo
per server lives in `ImapState`, only in memory, so a change to IMAP's formatting never leaves stale bytes behind.
The store's parsed cache keeps the protocol-neutral parse results underneath.

The bytes of one item in one Maildir sit on a shelf of their own, a dict keyed by (key,
size): a FETCH of a whole mailbox looks each message up there, one small key per message,
rather than in one dict of every item of every mailbox under a key built of four parts.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RenderedMemo"]


class RenderedMemo:
    """A hit is not moved (that would cost as much as the lookup), so eviction is first in,
    first out.  No lock: it is used on the reactor thread, and a dict's single operations are
    atomic anyway; the byte count is then only approximate."""

    def __init__(self, budget_bytes: int = 24 * 1024 * 1024):
        self.budget = budget_bytes
        self.used = 0
        self._shelves: dict[tuple, dict] = {}
        # (shelf, key) in the order they were put: what goes first when over budget.
        self._order: deque = deque()
        self._canonical: dict = {}

    def canonical(self, part):
        """One shared object per equal key part (a Maildir path, an item's tag): keys built
        from it then compare by identity, not element by element (a tag holds a set of
        header names)."""
        canonical = self._canonical
        if len(canonical) >= _CANONICAL_KEPT:
            canonical.clear()  # only the speed of a lookup depends on it
        return canonical.setdefault(part, part)

    def shelf(self, scope, tag) -> dict:
        """The rendered bytes of item `tag` in Maildir `scope`, by (message key, size).  Read
        it directly; add to it with `put`."""
        shelves = self._shelves
        found = shelves.get((scope, tag))
        if found is None:
            if len(shelves) >= _SHELVES_KEPT:
                self.clear()
                shelves.clear()
            found = shelves[(scope, tag)] = {}
        return found

    def put(self, shelf: dict, key: tuple, value: bytes) -> None:
        old = shelf.get(key)
        if old is not None:
            self.used -= _OVERHEAD + len(old)
        shelf[key] = value
        order = self._order
        order.append((shelf, key))
        self.used += _OVERHEAD + len(value)
        while self.used > self.budget and order:
            gone_shelf, gone_key = order.popleft()
            gone = gone_shelf.pop(gone_key, None)
            if gone is not None:
                self.used -= _OVERHEAD + len(gone)

    def __len__(self) -> int:
        return sum(map(len, self._shelves.values()))

    def clear(self) -> None:
        # Emptied, not replaced: renderers holding a shelf see it empty (and a shelf no
        # longer listed still has its entries in the order).
        for shelf in self._shelves.values():
            shelf.clear()
        for shelf, _ in self._order:
            shelf.clear()
        self._order.clear()
        self.used = 0


_CANONICAL_KEPT = 1024
_SHELVES_KEPT = 4096
_OVERHEAD = 280  # a key tuple, its strings, the dict slot and the bytes header (measured RSS)
