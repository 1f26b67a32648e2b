"""The Sieve grammar (RFC 5228 §8): script text in, a tree of commands out, nothing checked
beyond syntax.  What each command may take is `commands.py`'s business.

Pure and bounded: the text is read once, nesting is capped, and every failure is a SieveError
carrying the line it was found on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class SieveError(Exception):
    """A script that must be refused (at upload) or a run that must stop (at delivery)."""

    def __init__(self, line: int, message: str):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


# Nesting of blocks and tests; a deeper script is refused rather than recursed into.
MAX_NESTING = 32


@dataclass
class StringValue:
    """A string argument; `text` is after escapes (and encoded-character, when required)."""

    text: str
    line: int
    # True when the string was a multi-line `text:` (RFC 5228 §2.4.2); matters for nothing
    # but error messages, kept for tests.
    multiline: bool = False


@dataclass
class Argument:
    kind: str  # "tag", "number", "string", "list"
    value: object  # tag name (lower case, without ":"), int, StringValue, list[StringValue]
    line: int


@dataclass
class Test:
    name: str
    line: int
    arguments: list[Argument]
    tests: list[Test]


@dataclass
class Command:
    name: str
    line: int
    arguments: list[Argument]
    tests: list[Test]
    block: list[Command] | None
    # Filled in by the checker: tag name -> value (True for a flag tag), positional values.
    tags: dict = field(default_factory=dict)
    positional: list = field(default_factory=list)


_TOKEN = re.compile(
    r"""
      (?P<ws>[ \t\r\n]+)
    | (?P<hash>\#[^\n]*)
    | (?P<bracket>/\*)
    | (?P<multiline>text:[ \t]*(?:\#[^\n]*)?\r?\n)
    | (?P<quoted>")
    | (?P<tag>:[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>[0-9]+[KMGkmg]?)
    | (?P<identifier>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<special>[\[\](),;{}])
    """,
    re.VERBOSE,
)
_QUANTIFIERS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# RFC 5228 §2.4.1: numbers are at least 31 bits; larger ones are refused, not wrapped.
MAX_NUMBER = (1 << 63) - 1


@dataclass
class Token:
    kind: str
    value: object
    line: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, end = 0, 1, len(text)
    while pos < end:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise SieveError(line, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup
        start_line = line
        if kind == "bracket":
            close = text.find("*/", m.end())
            if close < 0:
                raise SieveError(line, "unterminated comment")
            line += text.count("\n", pos, close + 2)
            pos = close + 2
            continue
        if kind == "quoted":
            value, pos, line = _quoted(text, m.end(), line)
            tokens.append(Token("string", StringValue(value, start_line), start_line))
            continue
        if kind == "multiline":
            value, pos, line = _multiline(text, m.end(), line + 1, start_line)
            tokens.append(Token("string", StringValue(value, start_line, True), start_line))
            continue
        raw = m.group()
        pos = m.end()
        if kind in ("ws", "hash"):
            line += raw.count("\n")
            continue
        if kind == "number":
            tokens.append(Token("number", _number(raw, line), line))
        elif kind == "tag":
            tokens.append(Token("tag", raw[1:].lower(), line))
        elif kind == "identifier":
            tokens.append(Token("identifier", raw.lower(), line))
        else:
            tokens.append(Token(raw, raw, line))
    return tokens


def _number(raw: str, line: int) -> int:
    unit = _QUANTIFIERS.get(raw[-1].lower(), 1)
    digits = raw[:-1] if unit != 1 else raw
    value = int(digits) * unit if len(digits) < 20 else MAX_NUMBER + 1
    if value > MAX_NUMBER:
        raise SieveError(line, "number too large")
    return value


def _quoted(text: str, pos: int, line: int) -> tuple[str, int, int]:
    """RFC 5228 §2.4.2: backslash quotes the next character; any other escape means the
    character itself."""
    out: list[str] = []
    end = len(text)
    # The next quote and backslash (`end` for none) are each looked for again only once
    # passed: finding the quote afresh after every escape read the rest of the script once
    # per escape.
    quote = backslash = -1
    while True:
        if quote < pos:
            quote = _find_or_end(text, '"', pos)
        if backslash < pos:
            backslash = _find_or_end(text, "\\", pos)
        stop = min(quote, backslash)
        if stop == end:
            raise SieveError(line, "unterminated string")
        chunk = text[pos:stop]
        out.append(chunk)
        line += chunk.count("\n")
        if text[stop] == '"':
            return "".join(out), stop + 1, line
        if stop + 1 >= end:
            raise SieveError(line, "unterminated string")
        out.append(text[stop + 1])
        line += text[stop + 1] == "\n"
        pos = stop + 2


def _find_or_end(text: str, char: str, pos: int) -> int:
    found = text.find(char, pos)
    return len(text) if found < 0 else found


def _multiline(text: str, pos: int, line: int, start: int) -> tuple[str, int, int]:
    """RFC 5228 §2.4.2: lines up to a line holding only ".", with a leading "." doubled."""
    out: list[str] = []
    end = len(text)
    while pos < end:
        nl = text.find("\n", pos)
        if nl < 0:
            break
        row = text[pos:nl]
        row_end = nl + 1
        if row.rstrip("\r") == ".":
            return "".join(out), row_end, line + 1
        if row.startswith(".."):
            row = row[1:]
        out.append(row.rstrip("\r") + "\r\n")
        pos = row_end
        line += 1
    raise SieveError(start, "unterminated multi-line string")


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.pos = 0
        self.last_line = tokens[-1].line if tokens else 1

    def peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SieveError(self.last_line, "unexpected end of script")
        self.pos += 1
        return tok

    def expect(self, kind: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise SieveError(tok.line, f"expected {kind!r}, found {_describe(tok)}")
        return tok

    def commands(self, depth: int, closing: bool) -> list[Command]:
        if depth > MAX_NESTING:
            raise SieveError(self.peek().line if self.peek() else self.last_line, "too deep")
        out: list[Command] = []
        while True:
            tok = self.peek()
            if tok is None:
                if closing:
                    raise SieveError(self.last_line, "missing '}'")
                return out
            if tok.kind == "}":
                if not closing:
                    raise SieveError(tok.line, "unexpected '}'")
                self.pos += 1
                return out
            out.append(self.command(depth))

    def command(self, depth: int) -> Command:
        name = self.expect("identifier")
        arguments = self.arguments()
        tests = self.tests(depth)
        tok = self.take()
        if tok.kind == ";":
            return Command(name.value, name.line, arguments, tests, None)
        if tok.kind == "{":
            block = self.commands(depth + 1, closing=True)
            return Command(name.value, name.line, arguments, tests, block)
        raise SieveError(
            tok.line, f"expected ';' or '{{' after {name.value}, found {_describe(tok)}"
        )

    def arguments(self) -> list[Argument]:
        out: list[Argument] = []
        while (tok := self.peek()) is not None:
            if tok.kind in ("tag", "number", "string"):
                self.pos += 1
                out.append(Argument(tok.kind, tok.value, tok.line))
            elif tok.kind == "[":
                self.pos += 1
                out.append(Argument("list", self.string_list(tok.line), tok.line))
            else:
                break
        return out

    def string_list(self, line: int) -> list[StringValue]:
        items = [self.expect("string").value]
        while True:
            tok = self.take()
            if tok.kind == "]":
                return items
            if tok.kind != ",":
                raise SieveError(
                    tok.line, f"expected ',' or ']' in a string list, found {_describe(tok)}"
                )
            items.append(self.expect("string").value)

    def tests(self, depth: int) -> list[Test]:
        tok = self.peek()
        if tok is None:
            return []
        if tok.kind == "identifier":
            return [self.test(depth)]
        if tok.kind == "(":
            self.pos += 1
            out = [self.test(depth)]
            while True:
                tok = self.take()
                if tok.kind == ")":
                    return out
                if tok.kind != ",":
                    raise SieveError(
                        tok.line, f"expected ',' or ')' in a test list, found {_describe(tok)}"
                    )
                out.append(self.test(depth))
        return []

    def test(self, depth: int) -> Test:
        if depth > MAX_NESTING:
            raise SieveError(self.peek().line, "too deep")
        name = self.expect("identifier")
        arguments = self.arguments()
        return Test(name.value, name.line, arguments, self.tests(depth + 1))


def _describe(tok: Token) -> str:
    if tok.kind == "string":
        return "a string"
    if tok.kind == "number":
        return "a number"
    if tok.kind == "tag":
        return f"tag :{tok.value}"
    if tok.kind == "identifier":
        return f"'{tok.value}'"
    return f"'{tok.kind}'"


def parse_tree(text: str) -> list[Command]:
    """The commands of a script, syntax only."""
    return _Parser(tokenize(text)).commands(0, closing=False)
