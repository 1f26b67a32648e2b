"""Rendered FETCH items per message (ENVELOPE, BODY, BODYSTRUCTURE, top-level
HEADER.FIELDS[.NOT] extracts), kept in memory under a byte budget.

Why: clients page through whole mailboxes asking the same items again on every connect, and
turning parse results into IMAP wire bytes costs more than the rest of such a FETCH.  A
message file never changes under its key, so (Maildir, key, size, item) names the bytes for
good (the Maildir because another mailbox may hold a file of the same name and size); one memo
per server lives in `ImapState`, only in memory, so a change to IMAP's formatting never leaves stale bytes behind.
The store's parsed cache keeps the protocol-neutral parse results underneath.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RenderedMemo"]


class RenderedMemo:
    """Insertion-ordered: a hit is not moved (that would cost as much as the lookup), so
    eviction is first in, first out.  No lock: it is used on the reactor thread, and a dict's
    single operations are atomic anyway; the byte count is then only approximate."""

    def __init__(self, budget_bytes: int = 24 * 1024 * 1024):
        self.budget = budget_bytes
        self.used = 0
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self.get = self._items.get
        self._canonical: dict = {}

    def canonical(self, part):
        """One shared object per equal key part (a Maildir path, an item's tag): keys built
        from it then compare by identity, not element by element (a tag holds a set of
        header names)."""
        canonical = self._canonical
        if len(canonical) >= _CANONICAL_KEPT:
            canonical.clear()  # only the speed of a lookup depends on it
        return canonical.setdefault(part, part)

    def put(self, key: tuple, value: bytes) -> None:
        items = self._items
        if key in items:
            self.used -= _OVERHEAD + len(items.pop(key))
        items[key] = value
        self.used += _OVERHEAD + len(value)
        while self.used > self.budget and items:
            _, gone = items.popitem(last=False)
            self.used -= _OVERHEAD + len(gone)

    def __contains__(self, key: tuple) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.used = 0


_CANONICAL_KEPT = 1024
_OVERHEAD = 280  # a key tuple, its strings, the dict slot and the bytes header (measured RSS)
