"""Reading the untagged IMAP responses imaplib hands back (FETCH, LIST) into Python values.

imaplib splits a response at each literal: an item is either bytes (a line without literal)
or a (text ending in "{n}", literal bytes) tuple, and text after a literal arrives as the next
bytes item. `responses()` joins those pieces back into one token stream per response.
Grammar: RFC 3501 §9 (msg-att, mailbox-list). Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_LITERAL_TAIL = re.compile(rb"\{(\d+)\+?\}$")


class ResponseError(ValueError):
    """A server response we cannot read."""


@dataclass(frozen=True)
class Literal:
    data: bytes


Value = bytes | Literal | None | list


def _segments(items: list) -> Iterator[list[bytes | Literal]]:
    """Group imaplib's pieces into responses: lists of text and literal segments."""
    current: list[bytes | Literal] | None = None
    for item in items:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, literal = item
            if current is None or (head[:1].isdigit() or head[:1] == b"("):
                if current:
                    yield current
                current = []
            current.append(_LITERAL_TAIL.sub(b"", head.rstrip()))
            current.append(Literal(literal))
        else:
            if current is not None and not (item[:1].isdigit() or item[:1] == b"("):
                current.append(item)  # the rest of a response after a literal
                continue
            if current:
                yield current
            current = [item]
    if current:
        yield current


class _Reader:
    def __init__(self, segments: list[bytes | Literal]):
        self.tokens: list[bytes | Literal] = []
        for seg in segments:
            if isinstance(seg, Literal):
                self.tokens.append(seg)
            else:
                self.tokens.extend(_lex(seg))
        self.pos = 0

    def next(self):
        if self.pos >= len(self.tokens):
            raise ResponseError("unexpected end of response")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def value(self) -> Value:
        tok = self.next()
        if tok == b"(":
            out = []
            while True:
                if self.pos >= len(self.tokens):
                    raise ResponseError("unclosed list")
                if self.tokens[self.pos] == b")":
                    self.pos += 1
                    return out
                out.append(self.value())
        if tok == b")":
            raise ResponseError("unexpected ')'")
        if isinstance(tok, Literal):
            return tok
        if isinstance(tok, _Quoted):
            return bytes(tok)
        if tok.upper() == b"NIL":
            return None
        return tok


class _Quoted(bytes):
    pass


def _lex(text: bytes) -> Iterator[bytes]:
    i, n = 0, len(text)
    while i < n:
        c = text[i : i + 1]
        if c in b" \r\n":
            i += 1
        elif c in b"()":
            yield c
            i += 1
        elif c == b'"':
            j, out = i + 1, bytearray()
            while j < n and text[j : j + 1] != b'"':
                if text[j : j + 1] == b"\\" and j + 1 < n:
                    j += 1
                out += text[j : j + 1]
                j += 1
            if j >= n:
                raise ResponseError("unterminated quoted string")
            yield _Quoted(bytes(out))
            i = j + 1
        else:
            # An atom; a section "[...]" (which may hold spaces and parens) is part of it.
            j, depth = i, 0
            while j < n:
                ch = text[j : j + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in b' ()"\r\n':
                    break
                j += 1
            yield text[i:j]
            i = j


def _bytes(v: Value) -> bytes:
    if isinstance(v, list):
        raise ResponseError("a list where a string was expected")
    return v.data if isinstance(v, Literal) else (v or b"")


def parse_fetch(items: list) -> list[dict[str, Value]]:
    """`<seq> (KEY value ...)` responses as dicts keyed by upper-case item name."""
    out = []
    for segs in _segments(items):
        r = _Reader(segs)
        seq = r.next()
        if not isinstance(seq, bytes) or not seq.isdigit():
            continue  # not a FETCH response (imaplib may hand us other untagged lines)
        if r.pos < len(r.tokens) and r.tokens[r.pos] == b"FETCH":
            r.next()
        attrs = r.value()
        if not isinstance(attrs, list) or len(attrs) % 2:
            raise ResponseError("bad FETCH attribute list")
        d: dict[str, Value] = {}
        for k, v in zip(attrs[::2], attrs[1::2], strict=True):
            d[_bytes(k).decode("ascii", "replace").upper()] = v
        out.append(d)
    return out


def body_of(d: dict[str, Value], prefix: str) -> bytes | None:
    """The value of the first item whose name starts with `prefix` (e.g. 'BODY[')."""
    for k, v in d.items():
        if k.startswith(prefix):
            return _bytes(v)
    return None


@dataclass(frozen=True)
class ListEntry:
    attributes: tuple[str, ...]
    delimiter: str | None
    name: bytes  # as sent (modified UTF-7 unless UTF8=ACCEPT)


def parse_list(items: list) -> list[ListEntry]:
    """`(\\attr ...) "/" name` LIST responses."""
    out = []
    for segs in _segments(items):
        r = _Reader(segs)
        attrs = r.value()
        delim = r.value()
        name = r.value()
        if not isinstance(attrs, list):
            raise ResponseError("bad LIST attributes")
        out.append(
            ListEntry(
                tuple(_bytes(a).decode("ascii", "replace") for a in attrs),
                _bytes(delim).decode("ascii", "replace") if delim is not None else None,
                _bytes(name),
            )
        )
    return out
