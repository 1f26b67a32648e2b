"""IMAP4 command reader: bytes in, `Command` values out, literal-aware and free of I/O.

The protocol class feeds received bytes to a `CommandReader` and pulls events from it one
at a time, only when it is ready to run the next command (commands run strictly in order).
The reader tracks synchronizing literals (`{n}`, answered by the protocol with a `+`
continuation), non-synchronizing ones (`{n+}`, RFC 7888 LITERAL+) and `~{n}` literal8
(RFC 3516 BINARY), and enforces the line and literal size limits before any literal byte is
read, so an oversized APPEND is refused without being received.

Shared token format (fetch/search/sort/thread parse their arguments from it):
``Command(tag, name, args)``; `name` is upper-cased with ``UID`` folded in ("UID FETCH");
each arg is an `Atom` (str subclass; ``NIL`` is ``Atom("NIL")``; an atom holding ``[...]``
keeps the bracketed part verbatim, spaces and parentheses included, and what follows it,
so ``BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>`` is one Atom), `bytes` for quoted strings
and literals, or a `list` for a parenthesized list (nested).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailsuite.limits import RUNAWAY_LINE

__all__ = [
    "Atom",
    "Command",
    "ImapBad",
    "ImapNo",
    "ImapBye",
    "CommandReader",
    "Literal8",
    "LiteralBytes",
    "LiteralFile",
    "NeedContinuation",
    "LoginFailed",
    "RejectedCommand",
    "tokenize",
    "parse_command",
    "parse_sequence_set",
    "SequenceSet",
]


class Atom(str):
    """An IMAP atom (RFC 3501 §4.1), kept apart from strings so `NIL` differs from `"NIL"`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(slots=True)
class Command:
    tag: str
    name: str
    args: list = field(default_factory=list)


class ImapError(Exception):
    """A command failure carrying its wire reply; the protocol formats it in one place."""

    status = "BAD"

    def __init__(self, code_or_text: str, text: str | None = None):
        if text is None:
            code, text = None, code_or_text
        else:
            code = code_or_text
        super().__init__(text)
        self.code = code
        self.text = text


class ImapBad(ImapError):
    """RFC 3501 §7.1.3: a protocol-level error (syntax, unknown command, wrong state)."""

    status = "BAD"


class ImapNo(ImapError):
    """RFC 3501 §7.1.2: the command was understood but failed (`ImapNo("TRYCREATE", "...")`)."""

    status = "NO"


class LoginFailed(ImapNo):
    """A login refused (wrong credentials, or the throttle): NO, and counted with the bad
    commands after `limits.bad_commands` of which the session is closed, as SMTP and POP3
    count theirs, so that one connection cannot try passwords for ever."""


class ImapBye(ImapError):
    """The server closes the connection after an untagged BYE with this text."""

    status = "BYE"


# --- the reader -----------------------------------------------------------------------------


@dataclass
class NeedContinuation:
    """A synchronizing literal of `size` octets was announced: send `+ ...` before it comes."""

    size: int


@dataclass
class RejectedCommand:
    """A command refused before or while reading it: reply `tag status [code] text`.

    `close` asks the protocol to say BYE (with the error's text) and drop the connection (used
    when the rest of the stream can no longer be trusted: an oversized non-synchronizing
    literal, a command line still without an end past RUNAWAY_LINE octets).
    """

    tag: str
    error: ImapError
    close: bool = False


# APPEND literals above this size are streamed into a temporary file (RFC 3501 §6.3.11 messages
# of tens of MB would otherwise sit in memory while they arrive).
SPOOL_LITERALS_ABOVE = 1 << 20
# Parenthesized lists nest at most this deep in one command. Real clients nest a few levels
# (a SEARCH with grouped ORs, APPEND's flag list); the code that walks a parsed command may
# recurse, so a command nested thousands deep is refused here, where it is cheap.
MAX_NESTING = 100
_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}$")
_TAG_CHARS = rb"[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c\x7d\x7e]"
_TAG_OK = re.compile(rb"^" + _TAG_CHARS + rb"+$")


class CommandReader:
    """Incremental framing of IMAP commands (RFC 3501 §2.2, literals §4.3, RFC 7888).

    `feed(data)` buffers bytes; `next_event()` returns a `Command`, a `NeedContinuation`, a
    `RejectedCommand`, or None when more input is needed.  `next_line()` returns one raw
    line (without CRLF) for the protocol's sub-dialogues (AUTHENTICATE responses, IDLE's DONE).
    """

    def __init__(
        self,
        max_line: int = 65536,
        max_literal: int = 64 * 1024 * 1024,
        append_limit: int | None = None,
    ):
        self.max_line = max_line
        self.max_literal = max_literal
        self.append_limit = append_limit if append_limit is not None else max_literal
        self._buf = bytearray()
        self._parts: list = []  # alternating text (bytes) and literal (bytes) pieces
        self._line_total = 0
        self._literal_total = 0
        self._literal_left = 0  # >0 while reading literal content
        self._literal_chunks: list[bytes] = []
        self._discard_line = False  # skipping the rest of an over-long line
        self._discarded = 0  # octets of it skipped so far
        self._discard_tag = "*"
        self._spool: LiteralFile | None = None  # the APPEND literal being spooled
        # spooled literals begun, not taken yet (take_spools)
        self.spools_begun: list[LiteralFile] = []
        # A smaller ceiling for every literal while it is set (before authentication).
        self.literal_cap: int | None = None

    # -- input ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self._buf += data

    def clear(self) -> None:
        """Drop all buffered input (RFC 3501 §6.2.1: nothing sent before STARTTLS completes
        may be acted on after it)."""
        self._buf.clear()
        self._reset_command()

    def buffered(self) -> int:
        return len(self._buf)

    def take_buffer(self) -> bytes:
        """Remove and return the unparsed input (used when COMPRESS starts mid-stream)."""
        data = bytes(self._buf)
        self._buf.clear()
        return data

    @property
    def in_command(self) -> bool:
        """True while part of a command (line or literal) has been read."""
        return bool(self._parts) or self._literal_left > 0

    def next_line(self) -> bytes | None:
        """One raw CRLF- (or LF-) terminated line, or None; None also when it is too long."""
        idx = self._buf.find(b"\n")
        if idx < 0:
            return None
        line = bytes(self._buf[:idx])
        del self._buf[: idx + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        return line

    def next_event(self):
        while True:
            if self._literal_left:
                if not self._buf:
                    return None
                take = min(self._literal_left, len(self._buf))
                if self._spool is not None:
                    self._spool.queue(bytes(self._buf[:take]))
                else:
                    self._literal_chunks.append(bytes(self._buf[:take]))
                del self._buf[:take]
                self._literal_left -= take
                if self._literal_left:
                    return None
                if self._spool is not None:
                    self._spool.complete = True
                    self._parts.append(self._spool)
                    self._spool = None
                else:
                    self._parts.append(b"".join(self._literal_chunks))
                self._literal_chunks = []
                continue
            idx = self._buf.find(b"\n")
            if self._discard_line:
                if idx < 0:
                    self._discarded += len(self._buf)
                    self._buf.clear()
                    if self._discarded > RUNAWAY_LINE:
                        err = ImapBad("TOOBIG", "Command line too long")
                        return RejectedCommand(self._discard_tag, err, close=True)
                    return None
                del self._buf[: idx + 1]
                self._discard_line = False
                tag = self._discard_tag
                self._reset_command()
                return RejectedCommand(tag, ImapBad("TOOBIG", "Command line too long"))
            if idx < 0:
                if len(self._buf) + self._line_total > self.max_line:
                    # RFC 7162 §4 / RFC 3501 §2.2: refuse without buffering the rest.
                    self._discard_tag = self._tag_of(self._first_text() or bytes(self._buf))
                    self._discarded = len(self._buf)
                    self._buf.clear()
                    self._discard_line = True
                return None
            line = bytes(self._buf[:idx])
            del self._buf[: idx + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line_total += len(line) + 2
            if self._line_total > self.max_line:
                tag = self._tag_of(self._first_text() or line)
                self._reset_command()
                return RejectedCommand(tag, ImapBad("TOOBIG", "Command line too long"))
            m = _LITERAL_AT_END.search(line) if line.endswith(b"}") else None
            if m is None:
                if not self._parts:
                    # A whole command on one line, what nearly every command is: nothing to
                    # join, and nothing else of a command to forget.
                    self._line_total = 0
                    if not line or line.isspace():
                        continue  # RFC 3501 is silent; Dovecot ignores empty lines
                    try:
                        return parse_command([line])
                    except ImapError as e:
                        return RejectedCommand(self._tag_of(line), e)
                self._parts.append(line)
                parts = self._parts
                self._reset_command()
                return self._build(parts)
            size = int(m.group(2))
            sync = not m.group(3)
            self._parts.append(line[: m.start()])
            first = self._parts[0]
            if self._is_append(first):
                limit = self.append_limit
                ceiling = max(limit, self.max_literal)
            else:
                # Only APPEND carries messages (and spools them to disk); any other command's
                # literals (names, passwords, search strings) wait in memory until the command
                # is whole, so together they are held to the command line's limit.
                limit = ceiling = min(self.max_literal, self.max_line)
            if self.literal_cap is not None:
                limit = ceiling = min(limit, self.literal_cap)
            if size > limit or self._literal_total + size > ceiling:
                tag = self._tag_of(first)
                self._reset_command()
                # RFC 7889 §4 / RFC 4469: TOOBIG without reading the literal.  A synchronizing
                # literal was never invited, so the stream stays in step; a non-synchronizing
                # one is already on its way, so the connection must go (RFC 7888 §4).
                err = ImapNo("TOOBIG", "Literal too large")
                return RejectedCommand(tag, err, close=not sync)
            self._literal_total += size
            self._parts.append(None)  # placeholder marker: a literal follows
            if m.group(1):
                self._parts[-1] = "literal8"
            self._literal_left = size
            self._literal_chunks = []
            if size and self._literal_total > SPOOL_LITERALS_ABOVE and self._is_append(first):
                # A large message being appended goes to disk as it arrives, not into memory,
                # and so does every literal that takes a MULTIAPPEND's or a CATENATE's literals
                # past that size together.  The reader only queues its chunks; whoever feeds
                # the reader writes them (`take_spools`), since writing is I/O.
                self._spool = LiteralFile(size)
                self.spools_begun.append(self._spool)
            if size == 0:
                self._parts.append(b"")
                self._literal_left = 0
            if sync:
                return NeedContinuation(size)

    # -- internals -----------------------------------------------------------------------
    def take_spools(self) -> list[LiteralFile]:
        """The spooled literals begun since the last call, in the order they were announced:
        their chunks arrive in their `pending` queues as the literals are read."""
        spools, self.spools_begun = self.spools_begun, []
        return spools

    def _reset_command(self) -> None:
        if self._spool is not None:  # a literal abandoned half-way
            self._spool.abandoned = True
            self._spool = None
        self._parts = []
        self._line_total = 0
        self._literal_total = 0
        self._literal_left = 0
        self._literal_chunks = []

    def _first_text(self) -> bytes | None:
        return self._parts[0] if self._parts else None

    @staticmethod
    def _tag_of(line: bytes) -> str:
        tag = line.split(b" ", 1)[0]
        if tag and _TAG_OK.match(tag) and len(tag) < 128:
            return tag.decode("ascii")
        return "*"

    @staticmethod
    def _is_append(first: bytes) -> bool:
        """Whether the command carries messages: APPEND, or REPLACE (RFC 8508) in either form."""
        words = first.split(b" ", 3)
        if len(words) < 2:
            return False
        name = words[1].upper()
        if name == b"UID" and len(words) > 2:
            return words[2].upper() == b"REPLACE"
        return name in (b"APPEND", b"REPLACE")

    def _build(self, parts: list):
        # parts: text, marker, literal, text, marker, literal, ..., text
        try:
            return parse_command(_pieces(parts))
        except ImapError as e:
            return RejectedCommand(self._tag_of(parts[0]), e)


def _pieces(parts: list) -> list:
    """Turn reader parts into alternating text / `_Literal` pieces for the tokenizer."""
    out: list = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p is None or p == "literal8":
            out.append(_Literal(parts[i + 1], p == "literal8"))
            i += 2
        else:
            out.append(p)
            i += 1
    return out


class LiteralBytes(bytes):
    """A `{n}` literal's octets, told apart from a quoted string of the same octets where the
    grammar cares: APPEND's date-time is a quoted string only (RFC 3501 §9), so a short
    literal after a message is MULTIAPPEND's next message (RFC 3502), not a date."""


class Literal8(bytes):
    """A literal8 (`~{n}`, RFC 3516 §4.3): bytes that may be binary, kept apart from `{n}`
    literals so that APPEND can store them without their line ends being rewritten."""


class LiteralFile:
    """An APPEND literal too large to hold in memory, streamed into a temporary file.

    The reader queues each chunk as it arrives (`pending`, `pending_bytes`) and sets
    `complete` when the last one is queued, or `abandoned` when the command is dropped
    half-way; it never touches the disk.  The reader's feeder writes the queue into `file`
    (`imap.literal_spool`), and the command that receives the literal reads `file`
    (positioned at the start) and closes it.  `binary`: it came as a literal8."""

    def __init__(self, size: int):
        self.file = None
        self.size = size
        self.binary = False
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.complete = False
        self.abandoned = False

    def __len__(self) -> int:
        return self.size

    def queue(self, chunk: bytes) -> None:
        self.pending.append(chunk)
        self.pending_bytes += len(chunk)

    def take_pending(self) -> list[bytes]:
        """The chunks queued so far (the queue is emptied), for one write."""
        chunks, self.pending, self.pending_bytes = self.pending, [], 0
        return chunks

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@dataclass
class _Literal:
    data: bytes
    literal8: bool = False


# --- tokenizer ------------------------------------------------------------------------------

_ATOM_STOP = frozenset(b' (){"') | frozenset(range(0, 0x20)) | {0x7F}


def tokenize(pieces: list, start: int = 0) -> list:
    """Tokenize alternating text/literal pieces into the shared token format.

    Raises ImapBad on malformed input (unbalanced parentheses or brackets, bad quoting, stray
    characters).  `start` is the offset in the first text piece to begin at.
    """
    root: list = []
    stack: list[list] = [root]
    need_space = False  # tokens must be separated by SP (RFC 3501 §9 grammar)
    after_literal = False
    for pi, piece in enumerate(pieces):
        if isinstance(piece, _Literal):
            if need_space:
                raise ImapBad("Missing space before literal")
            data = piece.data
            if piece.literal8:
                if isinstance(data, LiteralFile):
                    data.binary = True
                else:
                    data = Literal8(data)
            elif not isinstance(data, LiteralFile):
                data = LiteralBytes(data)
            stack[-1].append(data)
            need_space = True
            after_literal = True
            continue
        text = piece
        i = start if pi == 0 else 0
        n = len(text)
        while i < n:
            c = text[i]
            if c == 0x20:
                if not need_space and after_literal:
                    # imapclient's MULTIAPPEND sends two spaces between literals; accept it.
                    i += 1
                    continue
                if not need_space:
                    if i + 1 < n and text[i + 1] == 0x29:
                        raise ImapBad("Space before closing parenthesis")
                    raise ImapBad("Unexpected space")
                need_space = False
                i += 1
                continue
            after_literal = False
            if c == 0x29:  # ")"
                if len(stack) == 1:
                    raise ImapBad("Unbalanced parenthesis")
                stack.pop()
                need_space = True
                i += 1
                continue
            if need_space:
                raise ImapBad("Missing space between arguments")
            if c == 0x28:  # "("
                if len(stack) > MAX_NESTING:
                    raise ImapBad("LIMIT", "Parentheses nested too deeply")
                new: list = []
                stack[-1].append(new)
                stack.append(new)
                i += 1
                continue
            if c == 0x22:  # quoted string
                value, i = _quoted(text, i + 1)
                stack[-1].append(value)
                need_space = True
                continue
            if c == 0x7B or (c == 0x7E and i + 1 < n and text[i + 1] == 0x7B):
                # a literal marker that is not at the end of a line
                raise ImapBad("Literal must end the line")
            run = _ATOMS.match(text, i)
            if run is not None:
                # Plain atoms one space apart, taken in one step (what most arguments are).
                i = run.end()
                try:
                    stack[-1].extend(map(Atom, text[run.start() : i].decode("utf-8").split(" ")))
                except UnicodeDecodeError:
                    raise ImapBad("Argument is not valid UTF-8") from None
            else:
                value, i = _atom(text, i)
                stack[-1].append(value)
            need_space = True
    if len(stack) != 1:
        raise ImapBad("Unbalanced parenthesis")
    return root


def _quoted(text: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    n = len(text)
    while i < n:
        c = text[i]
        if c == 0x22:
            return bytes(out), i + 1
        if c == 0x5C:  # RFC 3501 §9: quoted-specials escaped with "\"
            if i + 1 >= n or text[i + 1] not in (0x22, 0x5C):
                raise ImapBad("Bad escape in quoted string")
            out.append(text[i + 1])
            i += 2
            continue
        if c in (0x0D, 0x0A, 0x00):
            raise ImapBad("Bad character in quoted string")
        out.append(c)
        i += 1
    raise ImapBad("Unterminated quoted string")


# The FETCH attributes whose "[section]" may hold spaces and parentheses (RFC 3501 §6.4.5,
# RFC 3516 §6.4.5); everywhere else "[" is an ordinary ATOM-CHAR (RFC 3501 §9).
_SECTION_ATOMS = frozenset((b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"))


# Runs of atom characters up to a possible section's "[", and of section characters up to
# the next bracket or forbidden byte: the regex engine walks them, not a Python loop per byte.
_ATOM_RUN = re.compile(b"[^" + re.escape(bytes(sorted(_ATOM_STOP | {0x5B}))) + b"]*")
_SECTION_RUN = re.compile(rb"[^\[\]\r\n\x00]*")
# Atoms separated by single spaces, each ending where an argument may end (a space, ")" or
# the end): atoms without "[", and section atoms whose section holds no space and no inner
# bracket (`BODY.PEEK[]<0.100>`); `_atom` takes anything else (`foo[bar`, `BODY[HEADER.FIELDS
# (FROM)]`) whole.
_ATOM_CHARS = re.escape(bytes(sorted(_ATOM_STOP)))
_PLAIN_ATOM = (
    b"(?:[^" + _ATOM_CHARS + b"\\[]+"
    b"|(?i:BODY|BODY\\.PEEK|BINARY|BINARY\\.PEEK|BINARY\\.SIZE)\\[[^\\[\\]\\r\\n\\x00 ]*\\]"
    b"[^" + _ATOM_CHARS + b"]*)(?=[ )]|\\Z)"
)
_ATOMS = re.compile(_PLAIN_ATOM + b"(?: " + _PLAIN_ATOM + b")*")
# A whole argument text of such atoms, with at most one parenthesized list of them at its end
# (`37 (BODY.PEEK[])`, `1:* (UID FLAGS)`, `INBOX`): what `tokenize` would make of it, read in
# one match rather than a step per token.
_FLAT_ARGS = re.compile(b"(" + _ATOMS.pattern + b")?(?:(?(1) )\\((" + _ATOMS.pattern + b")\\))?\\Z")


def _flat_args(text: bytes, start: int) -> list | None:
    """`tokenize([text], start)` for the common shapes `_FLAT_ARGS` takes; None for anything
    else (which `tokenize` then reads, and refuses where it must)."""
    m = _FLAT_ARGS.match(text, start)
    if m is None or m.end() == start:
        return None
    atoms, inner = m.group(1, 2)
    try:
        args = list(map(Atom, atoms.decode("utf-8").split(" "))) if atoms else []
        if inner is not None:
            args.append(list(map(Atom, inner.decode("utf-8").split(" "))))
    except UnicodeDecodeError:
        return None
    return args


def _atom(text: bytes, i: int) -> tuple[Atom, int]:
    start = i
    n = len(text)
    while True:
        i = _ATOM_RUN.match(text, i).end()
        if i >= n or text[i] != 0x5B:
            break
        if text[start:i].upper() not in _SECTION_ATOMS:
            i += 1  # an ordinary "[" (RFC 3501 §9 ATOM-CHAR)
            continue
        # a section spec, kept verbatim up to the matching "]"
        depth = 0
        while True:
            c = text[i]
            if c == 0x5B:
                depth += 1
            elif c == 0x5D:
                depth -= 1
                if depth == 0:
                    break
            else:
                raise ImapBad("Bad character in section")
            i = _SECTION_RUN.match(text, i + 1).end()
            if i >= n:
                raise ImapBad("Unterminated [ in argument")
        i += 1
    if i == start:
        raise ImapBad("Empty argument")
    try:
        return Atom(text[start:i].decode("utf-8")), i
    except UnicodeDecodeError:
        raise ImapBad("Argument is not valid UTF-8") from None


_COMMAND_NAME = re.compile(r"[A-Z0-9][A-Z0-9._-]*( [A-Z0-9._-]+)?")


# The tag and a plain command name, each ending at a space (or, the name, at the end), and
# UID's command: what `parse_command` would take them to be, found in one step.
_HEAD = re.compile(b"(" + _TAG_CHARS + rb"+) ([A-Za-z0-9][A-Za-z0-9._-]*)(?= |\Z)")
_UID_COMMAND = re.compile(rb" ([A-Za-z0-9._-]+)(?= |\Z)")


def parse_command(pieces: list) -> Command:
    """Parse one complete command (text and literal pieces) into a `Command`."""
    first = pieces[0]
    head = _HEAD.match(first) if type(first) is bytes else None
    if head is not None:
        name = head[2].decode("ascii").upper()
        end = head.end()
        if name == "UID":
            sub = _UID_COMMAND.match(first, end)
            if sub is None:
                head = None
            else:
                name = "UID " + sub[1].decode("ascii").upper()
                end = sub.end()
        if head is not None and (end < len(first) or len(pieces) == 1):
            # The arguments start after the space that ends the name, as the tokenizer
            # would have taken it.
            if end >= len(first):
                args = []
            elif len(pieces) == 1:
                args = _flat_args(first, end + 1)
                if args is None:
                    args = tokenize(pieces, end + 1)
            else:
                args = tokenize(pieces, end + 1)
            return Command(head[1].decode("ascii"), name, args)
    if isinstance(first, _Literal):
        raise ImapBad("Missing tag")
    tag_end = first.find(b" ")
    if tag_end <= 0:
        raise ImapBad("Missing command")
    tag = first[:tag_end]
    if not _TAG_OK.match(tag) or b"+" in tag:
        raise ImapBad("Invalid tag")
    tokens = tokenize(pieces, tag_end + 1)
    if not tokens or not isinstance(tokens[0], Atom):
        raise ImapBad("Missing command")
    name = tokens[0].upper()
    args = tokens[1:]
    if name == "UID":
        if not args or not isinstance(args[0], Atom):
            raise ImapBad("UID needs a command")
        name = "UID " + args[0].upper()
        args = args[1:]
    if not _COMMAND_NAME.fullmatch(name):
        raise ImapBad("Invalid command name")
    return Command(tag.decode("ascii"), name, args)


def parse_line(line: bytes) -> Command:
    """Parse a single line without literals (tests and tools)."""
    return parse_command([line])


# --- sequence sets --------------------------------------------------------------------------


@dataclass(frozen=True)
class SequenceSet:
    """A parsed sequence-set (RFC 3501 §9): ranges with `None` standing for `*`.

    `dollar` is True for the SEARCHRES `$` reference (RFC 5182 §2.1).
    """

    ranges: tuple[tuple[int | None, int | None], ...]
    dollar: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Ranges as (low, high) with `*` replaced by `largest` (RFC 3501 §9: "n:m" == "m:n")."""
        out = []
        for a, b in self.ranges:
            a = largest if a is None else a
            b = largest if b is None else b
            if a > b:
                a, b = b, a
            out.append((a, b))
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(lo <= n <= hi for lo, hi in self.resolve(largest))


_SEQ_RE = re.compile(r"^(\d+|\*)(?::(\d+|\*))?$")


def parse_sequence_set(token, allow_dollar: bool = False) -> SequenceSet:
    """`1:4,7,9:*` into a SequenceSet; raises ImapBad.  Zero is not a valid number."""
    if not isinstance(token, Atom):
        raise ImapBad("Invalid sequence set")
    if token == "$":
        if not allow_dollar:
            raise ImapBad("Invalid sequence set")
        return SequenceSet((), dollar=True)
    ranges = []
    for part in token.split(","):
        m = _SEQ_RE.match(part)
        if not m:
            raise ImapBad("Invalid sequence set")
        vals = []
        for g in m.groups():
            if g is None:
                continue
            if g == "*":
                vals.append(None)
            else:
                v = int(g)
                if v == 0 or v > 0xFFFFFFFF:
                    raise ImapBad("Invalid sequence number")
                vals.append(v)
        if len(vals) == 1:
            vals.append(vals[0])
        ranges.append((vals[0], vals[1]))
    return SequenceSet(tuple(ranges))
