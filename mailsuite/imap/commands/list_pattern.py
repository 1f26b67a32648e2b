"""LIST and LSUB mailbox patterns (RFC 3501 §6.3.8, RFC 9051 §6.3.9): `*` matches any text,
`%` any text without the hierarchy separator, every other character itself.

Matched by simulating the pattern's automaton with the set of its positions reached so far held
as the bits of one integer, a character at a time: time linear in the name, whatever the
pattern.  A regular expression built from the pattern (`.*a.*a.*a...`) backtracks: twenty-five
stars against a 48-character name took the reactor minutes."""

from __future__ import annotations

from mailsuite.store.names import SEPARATOR as SEP


class MailboxPattern:
    """One pattern, compiled once for a LIST: `matches(name)` for each candidate name."""

    __slots__ = ("_literal", "_star", "_percent", "_wild", "_accept", "_start", "_most")

    def __init__(self, pattern: str):
        # Runs of wildcards collapse: "**" is "*", "%%" is "%", and a "*" beside a "%" is "*".
        # After that no wildcard follows another, so one shift reaches past each.
        tokens: list[str] = []
        for ch in pattern:
            if ch in "*%" and tokens and tokens[-1] in ("*", "%"):
                if ch == "*":
                    tokens[-1] = "*"
                continue
            tokens.append(ch)
        self._literal: dict[str, int] = {}  # character -> positions where it must come
        star = percent = 0
        for i, tok in enumerate(tokens):
            if tok == "*":
                star |= 1 << i
            elif tok == "%":
                percent |= 1 << i
            else:
                self._literal[tok] = self._literal.get(tok, 0) | 1 << i
        self._star, self._percent = star, percent
        self._wild = star | percent
        self._accept = 1 << len(tokens)
        self._start = self._close(1)
        # Characters the name must have at least (one per literal): longer patterns match
        # nothing, whatever their wildcards.
        self._most = len(tokens) - bin(self._wild).count("1")

    def _close(self, reached: int) -> int:
        """Add the position after each wildcard reached (a wildcard may match nothing)."""
        return reached | (reached & self._wild) << 1

    def matches(self, name: str) -> bool:
        if len(name) < self._most:
            return False
        reached = self._start
        literal, star, percent = self._literal, self._star, self._percent
        for ch in name:
            stay = reached & (star if ch == SEP else star | percent)
            reached = (reached & literal.get(ch, 0)) << 1 | stay
            if not reached:
                return False
            reached |= (reached & self._wild) << 1
        return bool(reached & self._accept)
