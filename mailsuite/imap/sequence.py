"""Sequence sets (RFC 3501 §9 `sequence-set`, RFC 5182 `$`): parse, test membership, format.

Usage notes for command modules:

    s = parse_sequence_set("1:*,5,7:9")          # Atom or str; raises ImapBad
    s.resolve(max_value) -> [(lo, hi), ...]       # merged, sorted, `*` -> max_value
    s.contains(n, max_value)                      # membership
    s.select(msgs, uid=True, saved_uids=...)      # messages of a list in the set
    format_sequence_set([1, 2, 3, 7, 9, 10])     # -> "1:3,7,9:10" (COPYUID, ESEARCH ALL)

`*` is kept as None until resolution because its value ("the largest number in use",
RFC 3501 §9) belongs to the moment the command runs.  `$` (SEARCHRES) resolves against the
saved result, which is a set of UIDs both for UID and for message-sequence commands
(RFC 5182 §2.1), so `select()` takes the saved UIDs separately.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mailsuite.imap.parser import ImapBad

__all__ = ["SequenceSet", "parse_sequence_set", "format_sequence_set", "MAX_NUMBER"]

# RFC 3501 §9: nz-number is a non-zero 32-bit unsigned value.
MAX_NUMBER = 0xFFFFFFFF

_RANGE_RE = re.compile(r"(?:[1-9][0-9]{0,9}|\*)(?::(?:[1-9][0-9]{0,9}|\*))?\Z")


@dataclass(frozen=True)
class SequenceSet:
    """Ranges `(lo, hi)` with None for `*`; `dollar` marks the SEARCHRES `$` reference.

    Attribute names match `mailsuite.imap.parser.SequenceSet` so either can be passed on.
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    dollar: bool = False

    def resolve(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with `*` = max_value (RFC 3501 §9: n:m == m:n)."""
        if len(self.ranges) == 1:  # nothing to sort or merge
            a, b = self.ranges[0]
            a = max_value if a is None else a
            b = max_value if b is None else b
            return [(a, b) if a <= b else (b, a)]
        spans = []
        for a, b in self.ranges:
            a = max_value if a is None else a
            b = max_value if b is None else b
            if a > b:
                a, b = b, a
            spans.append((a, b))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, n: int, max_value: int) -> bool:
        for a, b in self.ranges:
            a = max_value if a is None else a
            b = max_value if b is None else b
            if a > b:
                a, b = b, a
            if a <= n <= b:
                return True
        return False

    def matcher(self, max_value: int):
        """A fast membership test for many lookups (resolved once, bisected per call)."""
        spans = self.resolve(max_value)
        los = [lo for lo, _ in spans]
        his = [hi for _, hi in spans]

        def member(n: int) -> bool:
            i = bisect.bisect_right(los, n) - 1
            return i >= 0 and n <= his[i]

        return member

    def select(
        self,
        messages: Sequence,
        uid: bool,
        saved_uids: Iterable[int] | None = None,
    ) -> list[tuple[int, object]]:
        """`(seq, msg)` pairs of `messages` (in sequence order) that fall in this set.

        For a UID set, `*` is the highest UID present (RFC 3501 §6.4.8: "1:*" never empty when
        the mailbox is not).  `$` selects the saved SEARCHRES UIDs (RFC 5182).
        """
        if not messages:
            return []
        if self.dollar:
            saved = set(saved_uids or ())
            return [(i + 1, m) for i, m in enumerate(messages) if m.uid in saved]
        if not uid:
            out = []
            n = len(messages)
            for lo, hi in self.resolve(n):
                if lo > n:
                    continue
                hi = min(hi, n)
                out.extend((i, messages[i - 1]) for i in range(lo, hi + 1))
            return out
        uids = [m.uid for m in messages]
        out = []
        for lo, hi in self.resolve(uids[-1]):
            i = bisect.bisect_left(uids, lo)
            j = bisect.bisect_right(uids, hi)
            out.extend((k + 1, messages[k]) for k in range(i, j))
        return out

    def __str__(self) -> str:
        if self.dollar:
            return "$"
        parts = []
        for a, b in self.ranges:
            sa = "*" if a is None else str(a)
            sb = "*" if b is None else str(b)
            parts.append(sa if a == b else f"{sa}:{sb}")
        return ",".join(parts)


# Sets of one number by their text, shared (a SequenceSet is immutable): a client reading
# messages one by one sends the same few thousand numbers again and again, and a frozen
# dataclass costs more to make than the rest of parsing it.
SINGLES_KEPT = 4096
_SINGLES: dict[str, SequenceSet] = {}


def parse_sequence_set(text, allow_dollar: bool = True) -> SequenceSet:
    """`1:*,5,7:9` (or `$` when allowed) into a SequenceSet; ImapBad for anything else.

    Accepts an Atom or str; quoted strings (bytes) are not a sequence set (RFC 3501 §9).
    """
    if not isinstance(text, str):
        raise ImapBad("Invalid sequence set")
    if text == "$":
        if not allow_dollar:
            raise ImapBad("Invalid sequence set")
        return SequenceSet((), dollar=True)
    if not text:
        raise ImapBad("Invalid sequence set")
    single = _SINGLES.get(text)
    if single is not None:
        return single
    if text.isascii() and text.isdigit() and text[0] != "0" and len(text) <= 10:
        n = int(text)  # one number, what clients fetch a single message with
        if n > MAX_NUMBER:
            raise ImapBad("Sequence number out of range")
        single = SequenceSet(((n, n),))
        if len(_SINGLES) >= SINGLES_KEPT:
            _SINGLES.clear()
        _SINGLES[str(text)] = single
        return single
    ranges = []
    pieces = text.split(",")
    if len(pieces) > 1 and pieces[-1] == "":
        pieces.pop()  # "1:*," : a trailing comma is tolerated, as Dovecot does
    for part in pieces:
        if not _RANGE_RE.match(part):
            raise ImapBad(f"Invalid sequence set: {text[:40]}")
        a, _, b = part.partition(":")
        lo = None if a == "*" else int(a)
        hi = lo if not b else (None if b == "*" else int(b))
        for v in (lo, hi):
            if v is not None and v > MAX_NUMBER:
                raise ImapBad("Sequence number out of range")
        ranges.append((lo, hi))
    return SequenceSet(tuple(ranges))


def format_sequence_set(numbers: Iterable[int]) -> str:
    """Compact `1:3,7,9:10` form of a set of numbers (RFC 4315 uid-set, RFC 4731 ALL).

    Numbers are sorted and de-duplicated; an empty input gives "".
    """
    return format_uid_pairs(sorted(set(numbers)))


def format_uid_pairs(numbers: Sequence[int]) -> str:
    """Like format_sequence_set but keeps the given order (COPYUID source/dest lists must
    correspond element by element, RFC 4315 §3), compressing only ascending runs."""
    if not numbers:
        return ""
    parts = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)
