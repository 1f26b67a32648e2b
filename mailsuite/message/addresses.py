"""Address lists (RFC 5322 §3.4) parsed the forgiving way Dovecot parses them."""

from __future__ import annotations

import re

from mailsuite.message.headers import unfold

__all__ = ["parse_addresses", "MISSING_MAILBOX", "MISSING_DOMAIN"]

# The quoted-string run is possessive: its two branches start with different bytes, so there
# is only one way to split it and nothing to backtrack into. It fails only when it reaches a
# lone backslash at the very end (the closing quote was escaped); every later quote would be
# scanned to that same end and fail the same way, so after one failure the tokenizer switches
# to _NO_QUOTE_TOKEN_RE, where a quote is a plain byte, and the field costs one pass, not n.
_TOKEN_TAIL = rb'|(\()|([<>,:;@])|(\[[^\]]*\]?)|([^ \t\r\n"(<>,:;@\[\]]+)|(.)'
_ADDR_TOKEN_RE = re.compile(rb'[ \t\r\n]+|"((?:[^"\\]|\\.)*+)(?:"|\Z)' + _TOKEN_TAIL, re.S)
_NO_QUOTE_TOKEN_RE = re.compile(rb"[ \t\r\n]+|((?!))" + _TOKEN_TAIL, re.S)
_QUOTED_PAIR_RE = re.compile(rb"\\(.)", re.S)
# A list of bare addr-specs, each one atom token "@" one atom token, comma separated (what a
# long To: or Cc: mostly is): the tokens and the parser would make [NIL, NIL, local, host] of
# each, which these find in one pass (a tenth of the time for a list of 200,000).
_ATOM_TOKEN = rb'[^ \t\r\n"(<>,:;@\[\]]++'
_BARE_LIST_RE = re.compile(
    rb"[ \t]*+" + _ATOM_TOKEN + rb"@" + _ATOM_TOKEN + rb"[ \t]*+"
    rb"(?:,[ \t]*+" + _ATOM_TOKEN + rb"@" + _ATOM_TOKEN + rb"[ \t]*+)*+"
)
_BARE_ADDR_RE = re.compile(b"(" + _ATOM_TOKEN + b")@(" + _ATOM_TOKEN + b")")


def _addr_tokens(s: bytes) -> list[tuple[str, bytes]]:
    """Tokens: ("q", quoted) ("c", comment) ("s", special char) ("a", atom/dot-atom text)."""
    toks = []
    pos, n = 0, len(s)
    match = _ADDR_TOKEN_RE.match
    while pos < n:
        m = match(s, pos)
        q, paren, special, literal, atom, other = m.groups()
        if other == b'"':
            match = _NO_QUOTE_TOKEN_RE.match  # see _ADDR_TOKEN_RE
        if q is not None:
            if b"\\" in q:
                q = _QUOTED_PAIR_RE.sub(rb"\1", q)
            toks.append(("q", q.replace(b"\r", b"").replace(b"\n", b"")))
        elif paren is not None:
            text, pos = _comment(s, m.end())
            toks.append(("c", text))
            continue
        elif special is not None:
            toks.append(("s", special))
        elif literal is not None or atom is not None:
            toks.append(("a", literal if literal is not None else atom))
        elif other is not None:
            toks.append(("a", other))
        pos = m.end()
    return toks


def _comment(s: bytes, j: int) -> tuple[bytes, int]:
    """A (possibly nested) comment's text starting after its "("; returns (text, end)."""
    depth, n = 1, len(s)
    buf = bytearray()
    while j < n and depth:
        ch = s[j : j + 1]
        if ch == b"\\" and j + 1 < n:
            j += 1
            buf += s[j : j + 1]
        elif ch == b"(":
            depth += 1
            buf += ch
        elif ch == b")":
            depth -= 1
            if depth:
                buf += ch
        else:
            buf += ch
        j += 1
    return bytes(buf), j


MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"


class _AddressParser:
    """RFC 5322 §3.4 address-list over `_addr_tokens` output, forgiving the way Dovecot is.

    An address (or group) must be followed by "," or the end; anything else ends the list.
    A missing local part or domain becomes MISSING_MAILBOX / MISSING_DOMAIN (NIL host would
    mean "group" to the client, RFC 3501 §7.4.2), a phrase without an address becomes the
    name of an address with both missing, and an empty element before more addresses is kept
    as such an address.
    """

    def __init__(self, tokens: list[tuple[str, bytes]]):
        self.toks = [t for t in tokens]
        self.pos = 0
        self._next_special: list[int] | None = None

    def next_special(self, i: int) -> int:
        """The index of the first special at or after token i (len(toks) if none), so that a
        group member looks past its words for "<" without reading them: a group of n bare
        words cost n readings of the rest of the group.  Made at the first group member."""
        if self._next_special is None:
            n = len(self.toks)
            found = self._next_special = [n] * (n + 1)
            for j in range(n - 1, -1, -1):
                found[j] = j if self.toks[j][0] == "s" else found[j + 1]
        return self._next_special[i]

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def skip_comments(self) -> list[bytes]:
        found = []
        while self.pos < len(self.toks) and self.toks[self.pos][0] == "c":
            found.append(self.toks[self.pos][1])
            self.pos += 1
        return found

    def parse(self) -> list:
        out: list = []
        while True:
            self.skip_comments()
            t = self.peek()
            if t is None:
                return out
            if t == ("s", b","):
                self.pos += 1
                self.skip_comments()
                if self.peek() is not None:
                    out.append([None, None, MISSING_MAILBOX, MISSING_DOMAIN])
                continue
            if not self.address(out):
                return out
            self.skip_comments()
            t = self.peek()
            if t is None:
                return out
            if t != ("s", b","):
                return out  # junk after an address ends the list (Dovecot does the same)
            self.pos += 1

    def words(self) -> tuple[list[bytes], list[bytes]]:
        """Atoms and quoted strings up to the next special: (words, comments seen)."""
        words, comments = [], []
        while self.pos < len(self.toks):
            kind, v = self.toks[self.pos]
            if kind == "s":
                break
            if kind == "c":
                comments.append(v)
            else:
                words.append(v)
            self.pos += 1
        return words, comments

    def address(self, out: list) -> bool:
        start = self.pos
        words, comments = self.words()
        t = self.peek()
        if t == ("s", b":"):
            self.pos += 1
            out.append([None, None, b" ".join(words), None])
            self.group_members(out)
            out.append([None, None, None, None])
            return True
        if t == ("s", b"<"):
            self.pos += 1
            name = b" ".join(words) or None
            out.append(self.angle(name))
            return True
        if t == ("s", b"@") or (t is None or t == ("s", b",") or t == ("s", b";")):
            if t == ("s", b"@") or len(words) <= 1:
                self.pos = start
                local, host, comments = self.addr_spec()
                if local is None and host is None and not comments and self.pos == start:
                    if t is not None and t != ("s", b","):
                        # a stray special such as "To: ;": one empty address, then stop
                        out.append([None, None, MISSING_MAILBOX, MISSING_DOMAIN])
                    return False
                name = comments[-1] if comments else None
                out.append([name, None, local or MISSING_MAILBOX, host or MISSING_DOMAIN])
                return True
            # a phrase with no address at all
            out.append([b" ".join(words), None, MISSING_MAILBOX, MISSING_DOMAIN])
            return True
        if words:
            out.append([b" ".join(words), None, MISSING_MAILBOX, MISSING_DOMAIN])
            return True
        return False

    def group_members(self, out: list) -> None:
        while True:
            self.skip_comments()
            t = self.peek()
            if t is None:
                return
            if t == ("s", b";"):
                self.pos += 1
                return
            if t == ("s", b","):
                self.pos += 1
                continue
            before = self.pos
            if not self.mailbox(out):
                if self.pos == before:
                    self.pos += 1  # skip what cannot start a mailbox

    def mailbox(self, out: list) -> bool:
        start = self.pos
        special = self.next_special(start)
        if special < len(self.toks) and self.toks[special] == ("s", b"<"):
            words, _ = self.words()
            self.pos += 1
            out.append(self.angle(b" ".join(words) or None))
            return True
        local, host, comments = self.addr_spec()
        if local is None and host is None:
            return self.pos != start
        name = comments[-1] if comments else None
        out.append([name, None, local or MISSING_MAILBOX, host or MISSING_DOMAIN])
        return True

    def angle(self, name: bytes | None) -> list:
        """After "<": [obs-route ":"] addr-spec ">"."""
        adl = None
        self.skip_comments()
        if self.peek() == ("s", b"@"):
            parts = []
            while self.pos < len(self.toks) and self.toks[self.pos] not in (
                ("s", b":"),
                ("s", b">"),
            ):
                if self.toks[self.pos][0] != "c":
                    parts.append(self.toks[self.pos][1])
                self.pos += 1
            if self.peek() == ("s", b":"):
                self.pos += 1
                adl = b"".join(parts)
        local, host, _ = self.addr_spec()
        # skip to the closing ">"
        while self.pos < len(self.toks) and self.toks[self.pos] != ("s", b">"):
            self.pos += 1
        if self.pos < len(self.toks):
            self.pos += 1
        return [name, adl, local or MISSING_MAILBOX, host or MISSING_DOMAIN]

    def addr_spec(self) -> tuple[bytes | None, bytes | None, list[bytes]]:
        comments = self.skip_comments()
        local_parts = []
        while self.pos < len(self.toks):
            kind, v = self.toks[self.pos]
            if kind == "c":
                comments.append(v)
            elif kind in ("a", "q") and (not local_parts or _dot_joined(local_parts[-1], v)):
                local_parts.append(v)
            else:
                break
            self.pos += 1
        local = b"".join(local_parts) or None
        host = None
        if self.peek() == ("s", b"@"):
            self.pos += 1
            host_parts = []
            while self.pos < len(self.toks):
                kind, v = self.toks[self.pos]
                if kind == "c":
                    comments.append(v)
                elif kind == "a" and (not host_parts or _dot_joined(host_parts[-1], v)):
                    host_parts.append(v)
                else:
                    break
                self.pos += 1
            host = b"".join(host_parts) or None
        comments += self.skip_comments()
        return local, host, comments


def _dot_joined(prev: bytes, nxt: bytes) -> bool:
    """obs-local-part / obs-domain: words separated by CFWS join only across a dot."""
    return prev.endswith(b".") or nxt.startswith(b".")


def parse_addresses(value: bytes | None) -> list | None:
    """An address-list header value into ENVELOPE address structures (RFC 3501 §7.4.2).

    Each address is `[name, adl, mailbox, host]` (None = NIL); a group is
    `[None, None, groupname, None]`, its members, then `[None, None, None, None]`.
    Returns None when there is no address at all.
    """
    if value is None:
        return None
    value = unfold(value)
    if _BARE_LIST_RE.fullmatch(value):
        return [[None, None, local, host] for local, host in _BARE_ADDR_RE.findall(value)]
    toks = _addr_tokens(value)
    out = _AddressParser(toks).parse()
    for a in out:
        if a[0] == b"":
            a[0] = None  # `"" <a@b>`: an empty display name is no name
    return out or None
