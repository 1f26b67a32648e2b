"""A POP3 session's view of its maildrop: numbered messages fixed at login, deletion marks.

RFC 1939 §5: messages are numbered from 1 for the whole session, sizes are wire octet counts,
and DELE only marks; nothing is removed before QUIT (the UPDATE state). Pure: no file access.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mailsuite.pop3.parser import Pop3Error


@dataclass(frozen=True)
class Entry:
    """One message of the maildrop: store UID, octets on the wire (CRLF), Maildir base name."""

    uid: int
    octets: int
    key: str


class Maildrop:
    def __init__(
        self,
        entries: Iterable[Entry],
        uidl: Callable[[Entry], str],
        shared: dict | None = None,
    ):
        """`shared` holds full listings (no message deleted) for other sessions that see the
        same maildrop, so that a client polling every minute costs no formatting."""
        self.entries: list[Entry] = list(entries)
        self.deleted: set[int] = set()  # message numbers
        # Unique-ids are made only when asked for: many sessions never send UIDL.
        self._uidl = uidl
        # Listings are cached until a DELE or RSET changes them (clients repeat LIST/UIDL).
        self._scan: list[bytes] | None = None
        self._uids: list[bytes] | None = None
        self._shared = shared if shared is not None else {}
        self._octets = sum(e.octets for e in self.entries)

    def _live(self) -> list[tuple[int, Entry]]:
        return [(i, e) for i, e in enumerate(self.entries, 1) if i not in self.deleted]

    def stat(self) -> tuple[int, int]:
        """Count and octets of the messages not marked deleted (RFC 1939 §5 STAT)."""
        if not self.deleted:
            return len(self.entries), self._octets
        live = self._live()
        return len(live), sum(e.octets for _, e in live)

    def get(self, number: int) -> Entry:
        """RFC 1939 §5: a message number may not refer to a message marked as deleted."""
        if not 1 <= number <= len(self.entries):
            raise Pop3Error(f"There's no message {number}.")
        if number in self.deleted:
            raise Pop3Error(f"Message {number} is deleted.")
        return self.entries[number - 1]

    def delete(self, number: int) -> None:
        self.get(number)
        self.deleted.add(number)
        self._scan = self._uids = None

    def reset(self) -> None:
        self.deleted.clear()
        self._scan = self._uids = None

    def scan_listing(self) -> list[bytes]:
        """RFC 1939 §5 LIST lines, "msg octets"; each starts with a digit (no byte-stuffing)."""
        if self._scan is None:
            self._scan = self._listing("scan", lambda i, e: b"%d %d" % (i, e.octets))
        return self._scan

    def uid_listing(self) -> list[bytes]:
        """RFC 1939 §7 UIDL lines, "msg unique-id"; each starts with a digit."""
        if self._uids is None:
            self._uids = self._listing("uidl", lambda i, e: b"%d %s" % (i, self.uidl(e).encode()))
        return self._uids

    def _listing(self, name: str, line) -> list[bytes]:
        """Lines for the messages not marked deleted; the full listing is shared."""
        if not self.deleted and name in self._shared:
            return self._shared[name]
        lines = [line(i, e) for i, e in self._live()]
        if not self.deleted:
            self._shared[name] = lines
        return lines

    def uidl(self, entry: Entry) -> str:
        return self._uidl(entry)

    def deleted_uids(self) -> list[int]:
        return sorted(self.entries[n - 1].uid for n in self.deleted)
