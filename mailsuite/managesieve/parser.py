"""ManageSieve wire syntax without I/O (RFC 5804 §4): input framed into lines of tokens.

A command is atoms and strings separated by spaces, ended by CRLF; a string is quoted or a
literal (`{n+}` CRLF and n octets, RFC 5804 §4 literal-c2s; the `{n}` form is taken the same
way, since ManageSieve has no continuation request to wait for). A literal can sit in the
middle of a command, so one command may span several physical lines.  The SASL responses of
AUTHENTICATE are lines holding one string, framed the same way.

Everything is bounded: the bytes of a command outside literals (`max_line`), each literal
(`literal_cap`), and what one command may hold in all.  A literal over its cap is either
reported at once (before login: the session closes) or read past without being kept
(after login: the command is answered NO), so the client's octets never run as commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailsuite.limits import RUNAWAY_LINE

CRLF = b"\r\n"

# The characters of an atom: printable ASCII except SP and the specials of RFC 5804 §4
# (DQUOTE, braces, parentheses, backslash).  A base64 SASL response sent bare is one atom too.
_ATOM = re.compile(rb"[!#-'*-\[\]-z|~]+")
_LITERAL_END = re.compile(rb"\{(\d{1,10})(\+?)\}$")
# Longest literal announcement, "{" 10 digits "+}" CR.
_TAIL = 15
# A command has a few arguments at most (RENAMESCRIPT has two, HAVESPACE two).
MAX_TOKENS = 16


@dataclass(frozen=True)
class Atom:
    """A bare word: a command name, a number, a bare SASL response."""

    text: str


Token = Atom | bytes  # bytes: a quoted string or a literal (still undecoded)


@dataclass(frozen=True)
class Line:
    """One complete command (or SASL response): its tokens in order."""

    tokens: tuple[Token, ...]

    @property
    def name(self) -> str:
        first = self.tokens[0] if self.tokens else None
        return first.text.upper() if isinstance(first, Atom) else ""

    @property
    def args(self) -> tuple[Token, ...]:
        return self.tokens[1:]


@dataclass(frozen=True)
class Malformed:
    """A command that is not ManageSieve syntax; the whole of it has been read past, or, when
    `endless`, a line still without an end past RUNAWAY_LINE octets (the session closes)."""

    reason: str
    name: str = ""
    endless: bool = False


@dataclass(frozen=True)
class LiteralTooLarge:
    """A literal over `literal_cap`.  With `skip_oversized` it comes once the command has been
    read to its end (its octets dropped); without, as soon as its size is seen."""

    size: int
    cap: int
    name: str = ""


Frame = Line | Malformed | LiteralTooLarge


class SyntaxProblem(Exception):
    pass


def tokenize(segment: bytes) -> tuple[list[Token], int | None]:
    """One physical line (no CRLF): its tokens, and the size of the literal it announces at
    its end (or None).  Raises SyntaxProblem."""
    tokens: list[Token] = []
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if c == 0x20:
            i += 1
            continue
        if c == 0x22:  # DQUOTE
            value, i = _quoted(segment, i + 1)
            tokens.append(value)
        elif c == 0x7B:  # "{"
            m = _LITERAL_END.match(segment, i)
            if m is None:
                raise SyntaxProblem("Invalid literal.")
            return tokens, int(m.group(1))
        else:
            m = _ATOM.match(segment, i)
            if m is None:
                raise SyntaxProblem("Invalid character in command.")
            tokens.append(Atom(m.group().decode("ascii")))
            i = m.end()
        if i < n and segment[i] != 0x20:
            raise SyntaxProblem("Missing space between arguments.")
    return tokens, None


def _quoted(segment: bytes, i: int) -> tuple[bytes, int]:
    """RFC 5804 §4 quoted: backslash escapes only DQUOTE and backslash; no CR, LF or NUL."""
    out = bytearray()
    n = len(segment)
    while i < n:
        c = segment[i]
        if c == 0x22:
            return bytes(out), i + 1
        if c == 0x5C:
            if i + 1 >= n or segment[i + 1] not in (0x22, 0x5C):
                raise SyntaxProblem("Invalid escape in quoted string.")
            out.append(segment[i + 1])
            i += 2
            continue
        if c in (0x00, 0x0D):
            raise SyntaxProblem("Invalid character in quoted string.")
        out.append(c)
        i += 1
    raise SyntaxProblem("Unterminated quoted string.")


class CommandReader:
    """Frames the input stream into commands: `feed` bytes, then `next()` until None."""

    def __init__(self, max_line: int, literal_cap: int, *, skip_oversized: bool = False):
        self.max_line = max_line
        self.literal_cap = literal_cap
        self.skip_oversized = skip_oversized
        self._buf = bytearray()
        self._reset()

    def _reset(self) -> None:
        self._tokens: list[Token] = []
        self._used = 0  # octets of this command outside literals
        self._literal: int | None = None  # octets of the literal still to read
        self._skip = 0  # octets of an oversized literal still to drop
        self._long_line = False  # dropping the rest of an overlong line
        self._dropped = 0  # octets of it dropped so far
        self._failure: Malformed | LiteralTooLarge | None = None
        self._reported = False  # the failure went out already (an oversized literal, at once)

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def in_command(self) -> bool:
        """Part of a command has been read (a literal or the rest of a line is awaited)."""
        return bool(self._tokens or self._used or self._literal or self._skip or self._failure)

    def discard(self) -> int:
        """Drop everything buffered and any command in progress (STARTTLS, RFC 5804 §2.2)."""
        n = len(self._buf)
        self._buf.clear()
        self._reset()
        return n

    def next(self) -> Frame | None:
        while True:
            if self._skip:
                taken = min(self._skip, len(self._buf))
                del self._buf[:taken]
                self._skip -= taken
                if self._skip:
                    return None
                continue
            if self._literal is not None:
                if len(self._buf) < self._literal:
                    return None
                self._tokens.append(bytes(self._buf[: self._literal]))
                del self._buf[: self._literal]
                self._literal = None
                continue
            i = self._buf.find(b"\n")
            if i < 0:
                if self._used + len(self._buf) > self.max_line:
                    self._fail(Malformed("Command line too long."))
                    self._used = self.max_line
                    self._long_line = True
                    # Keep the tail: a literal announced at the line's end is still seen.
                    self._dropped += max(len(self._buf) - _TAIL, 0)
                    del self._buf[:-_TAIL]
                    if self._dropped > RUNAWAY_LINE:
                        return Malformed("Command line too long.", endless=True)
                return None
            segment = bytes(self._buf[:i])
            del self._buf[: i + 1]
            if segment.endswith(b"\r"):
                segment = segment[:-1]
            frame = self._segment(segment)
            if frame is not None:
                return frame

    def _segment(self, segment: bytes) -> Frame | None:
        """One physical line of the command in progress; the command when it ends here."""
        if self._long_line:
            # The tail of a line that was too long: it may still announce a literal, whose
            # octets must not run as commands.
            self._long_line = False
            m = _LITERAL_END.search(segment)
            return self._announce(int(m.group(1))) if m else self._finish()
        self._used += len(segment) + 2
        if self._used > self.max_line:
            self._fail(Malformed("Command line too long."))
        if self._failure is not None:
            m = _LITERAL_END.search(segment)
            return self._announce(int(m.group(1))) if m else self._finish()
        try:
            tokens, literal = tokenize(segment)
        except SyntaxProblem as e:
            if not self._tokens:
                # The command's name, for the response, when the line starts with one.
                m = _ATOM.match(segment)
                if m:
                    self._tokens.append(Atom(m.group().decode("ascii")))
            self._fail(Malformed(str(e)))
            m = _LITERAL_END.search(segment)
            return self._announce(int(m.group(1))) if m else self._finish()
        self._tokens.extend(tokens)
        if len(self._tokens) > MAX_TOKENS:
            self._fail(Malformed("Too many arguments."))
        if literal is None:
            return self._finish()
        return self._announce(literal)

    def _announce(self, size: int) -> Frame | None:
        """A literal of `size` octets follows: read it, or drop it when over the cap or when
        the command has failed already."""
        if size > self.literal_cap and self._failure is None:
            self._fail(LiteralTooLarge(size, self.literal_cap))
            if not self.skip_oversized:
                self._skip = size
                self._reported = True
                return self._named(self._failure)
        if self._failure is not None:
            self._skip = size
        else:
            self._literal = size
        return None

    def _fail(self, failure: Malformed | LiteralTooLarge) -> None:
        if self._failure is None:
            self._failure = failure

    def _named(self, failure: Malformed | LiteralTooLarge) -> Frame:
        first = self._tokens[0] if self._tokens else None
        name = first.text.upper() if isinstance(first, Atom) else ""
        if isinstance(failure, Malformed):
            return Malformed(failure.reason, name)
        return LiteralTooLarge(failure.size, failure.cap, name)

    def _finish(self) -> Frame | None:
        failure, reported = self._failure, self._reported
        frame = self._named(failure) if failure is not None else Line(tuple(self._tokens))
        self._reset()
        return None if reported else frame
