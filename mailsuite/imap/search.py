"""SEARCH criteria: parse (RFC 3501 §6.4.4, RFC 7162 MODSEQ, RFC 5182 `$`) and evaluate.

Usage from the SEARCH / SORT / THREAD command modules:

    opts, prog = parse_search_command(args)      # handles RETURN (...) and CHARSET; ImapBad/ImapNo
    prog = parse_search(args, charset="UTF-8")   # criteria only
    ctx = SearchContext(content_loader=loader, recent_uids=session.recent, saved_uids=saved)
    hits = evaluate(prog, view_messages, ctx)    # Messages in sequence order
    seqs = evaluate_seqs(prog, view_messages, ctx)  # (seq, Message) pairs
    format_search([...numbers], modseq)          # "* SEARCH 1 2 3 (MODSEQ n)\\r\\n"
    format_esearch(tag, uid, numbers, opts, modseq)   # "* ESEARCH (TAG "a") UID MIN 1 ..."
    saved_result(opts, uids)                     # what SEARCHRES SAVE keeps (RFC 5182 §2.4)

`view_messages` is the session's view (index + 1 = sequence number).  `prog.needs_content` is
False when only index fields are used (flags, UIDs, sizes, dates, modseqs): evaluation then
touches no file.  Header keys use `content.fields()` (served by the parsed cache), BODY/TEXT
use the message bytes.  `prog.wants_modseq` says the response needs the MODSEQ addition
(RFC 7162 §3.1.5); `highest_modseq(hits)` gives its value.

Strings match as case-insensitive substrings after decoding RFC 2047 words, transfer
encodings and charsets (RFC 3501 §6.4.4; RFC 9051 §6.4.4.1).
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.sequence import SequenceSet, format_sequence_set, parse_sequence_set
from mailsuite.message.addresses import parse_addresses
from mailsuite.message.casemap import casemap, substring_test
from mailsuite.message.dates import parse_date_header
from mailsuite.message.decode import decode_header_value
from mailsuite.message.headers import field_value, first_value
from mailsuite.message.identity import content_id
from mailsuite.message.lines import header_end, to_wire
from mailsuite.message.text import part_text

__all__ = [
    "SearchProgram",
    "SearchContext",
    "SearchOptions",
    "parse_search",
    "parse_search_command",
    "evaluate",
    "evaluate_seqs",
    "format_search",
    "format_esearch",
    "saved_result",
    "highest_modseq",
    "freeze_numbers",
    "format_context_update",
    "parse_date",
    "decode_search_string",
    "SUPPORTED_CHARSETS",
]

SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")

# Cost classes: evaluate index tests before header tests before body scans.
INDEX, HEADER, BODY = 0, 1, 2


# --- program nodes ---------------------------------------------------------------------------


class _Node:
    cost = INDEX

    def test(self, env: _Env) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


class _All(_Node):
    def test(self, env):
        return True


class _And(_Node):
    def __init__(self, children: list[_Node]):
        self.children = sorted(children, key=lambda c: c.cost)
        self.cost = max((c.cost for c in children), default=INDEX)

    def test(self, env):
        for c in self.children:
            if not c.test(env):
                return False
        return True


class _Or(_Node):
    def __init__(self, a: _Node, b: _Node):
        self.a, self.b = (a, b) if a.cost <= b.cost else (b, a)
        self.cost = max(a.cost, b.cost)

    def test(self, env):
        return self.a.test(env) or self.b.test(env)


class _Not(_Node):
    def __init__(self, a: _Node):
        self.a = a
        self.cost = a.cost

    def test(self, env):
        return not self.a.test(env)


class _Flag(_Node):
    def __init__(self, flag: str, present: bool):
        self.flag = flag
        self.lower = flag.lower()
        self.present = present

    def test(self, env):
        flags = env.msg.flags
        has = self.flag in flags or any(f.lower() == self.lower for f in flags)
        return has == self.present


class _Recent(_Node):
    def __init__(self, mode: str):
        self.mode = mode  # RECENT, NEW, OLD

    def test(self, env):
        recent = env.msg.uid in env.ctx.recent_uids
        if self.mode == "RECENT":
            return recent
        if self.mode == "OLD":
            return not recent
        return recent and "\\Seen" not in env.msg.flags


class _SeqSet(_Node):
    def __init__(self, seqset: SequenceSet, uid: bool):
        self.seqset = seqset
        self.uid = uid

    def test(self, env):
        if self.seqset.dollar:
            return env.msg.uid in env.ctx.saved_uids_set
        if self.uid:
            return env.ctx.member(self, env.msg.uid, env.ctx.max_uid)
        return env.ctx.member(self, env.seq, env.ctx.count)


class _UidIn(_Node):
    """A message set fixed when the command was received (RFC 5267 §4.3: the message numbers
    and `$` of an updating search do not move with the mailbox): a test of the UID, by a
    set of UIDs or by UID ranges with `*` resolved."""

    def __init__(self, member: Callable[[int], bool]):
        self.member = member

    def test(self, env):
        return self.member(env.msg.uid)


class _Size(_Node):
    def __init__(self, larger: bool, n: int):
        self.larger = larger
        self.n = n

    def test(self, env):
        m = env.msg
        size = getattr(m, "wire_size", None) or m.size
        return size > self.n if self.larger else size < self.n


class _Modseq(_Node):
    def __init__(self, n: int):
        self.n = n

    def test(self, env):
        return env.msg.modseq >= self.n  # RFC 7162 §3.1.5: "greater than or equal"


class _Within(_Node):
    """RFC 5032 OLDER / YOUNGER (seconds, internal date)."""

    def __init__(self, older: bool, secs: int):
        self.older = older
        self.secs = secs

    def test(self, env):
        age = env.ctx.now - env.msg.internaldate
        return age >= self.secs if self.older else age < self.secs


class _InternalDate(_Node):
    def __init__(self, op: str, day: tuple[int, int, int]):
        self.op = op
        self.day = day

    def test(self, env):
        # RFC 3501 §6.4.4: internal date, "disregarding time and timezone" -> the local day
        t = time.localtime(env.msg.internaldate)
        return _cmp_day(self.op, (t.tm_year, t.tm_mon, t.tm_mday), self.day)


class _SaveDate(_Node):
    """RFC 8514 §5 SAVEDBEFORE/SAVEDON/SAVEDSINCE: the day the message was saved here; a
    message without a save date never matches."""

    def __init__(self, op: str, day: tuple[int, int, int]):
        self.op = op
        self.day = day

    def test(self, env):
        saved = env.msg.saved_at
        if saved is None:
            return False
        t = time.localtime(saved)
        return _cmp_day(self.op, (t.tm_year, t.tm_mon, t.tm_mday), self.day)


class _EmailId(_Node):
    """RFC 8474 §6: SEARCH EMAILID (a digest of the content, so the file is read)."""

    cost = BODY

    def __init__(self, wanted: str):
        self.wanted = wanted

    def test(self, env):
        return content_id(env.content().raw_bytes()) == self.wanted


class _SentDate(_Node):
    cost = HEADER

    def __init__(self, op: str, day: tuple[int, int, int]):
        self.op = op
        self.day = day

    def test(self, env):
        d = sent_day(env.content().fields())
        if d is None:
            d = (1970, 1, 1)  # no usable Date: the epoch, as Dovecot compares it
        return _cmp_day(self.op, d, self.day)


def _cmp_day(op: str, have: tuple, want: tuple) -> bool:
    if op == "BEFORE":
        return have < want
    if op == "ON":
        return have == want
    return have >= want  # SINCE: "within or later than"


class _Header(_Node):
    cost = HEADER

    def __init__(self, names: tuple[bytes, ...], needle: str):
        self.names = names
        self.needle = needle

    def test(self, env):
        needle = self.needle
        for name in self.names:
            text = decoded_field(env, name)
            if text is not None and needle in text:
                return True  # RFC 3501: an empty needle matches any message with the field
        return False


# Decoded header values in i;unicode-casemap form by (message key, size, field name): SEARCH
# FROM/SUBJECT/... over a big folder is then a dict lookup per message after the first time.
# Message files never change under their key, so entries never go stale; the table is bounded
# by clearing.
_DECODED: dict[tuple[str, int, bytes], str | None] = {}
_DECODED_MAX = 200_000
_MISSING = object()


_ADDRESS_HEADERS = frozenset(
    [
        b"from",
        b"to",
        b"cc",
        b"bcc",
        b"sender",
        b"reply-to",
        b"resent-from",
        b"resent-sender",
        b"resent-to",
        b"resent-cc",
        b"resent-bcc",
    ]
)


def _address_text(value: bytes) -> str:
    """An address header as Dovecot searches it: parsed, names decoded, rewritten as
    `Name <local@domain>` (missing parts spelled MISSING_MAILBOX / MISSING_DOMAIN)."""
    out = []
    group = False
    for name, _adl, local, host in parse_addresses(value) or ():
        if host is None:
            if local is not None:
                out.append(_decode_word(local) + ":")
                group = True
            elif group:
                out.append(";")
                group = False
            continue
        addr = (local or b"").decode("utf-8", "replace") + "@" + host.decode("utf-8", "replace")
        out.append(f"{_decode_word(name)} <{addr}>" if name else addr)
    return fold(_WSP_STR_RE.sub(" ", ", ".join(out)))


def _decode_word(v: bytes | None) -> str:
    return decode_header_value(v) if v else ""


def decoded_field(env: _Env, name: bytes) -> str | None:
    """All `name` fields of the message, RFC 2047-decoded and case-mapped, joined by newlines;
    None when the message has no such field."""
    key = getattr(env.msg, "key", None)
    if key is not None:
        key = (key, env.msg.size, name)
        v = _DECODED.get(key, _MISSING)
        if v is not _MISSING:
            return v
    values = []
    for n, raw in env.content().fields():
        if n == name:
            value = field_value(raw)
            if name in _ADDRESS_HEADERS:
                values.append(_address_text(value))
            elif b"=?" not in value and value.isascii():
                values.append(_squeeze(value).decode("ascii").upper())
            else:
                values.append(fold(_WSP_STR_RE.sub(" ", decode_header_value(value))))
    text = "\n".join(values) if values else None
    if key is not None:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[key] = text
    return text


class _BodyText(_Node):
    cost = BODY

    def __init__(self, needle: str, with_header: bool):
        self.needle = needle
        self.with_header = with_header
        self.ascii = needle.isascii()
        self.needle_b = needle.encode("utf-8")
        self.contains = substring_test(needle)

    def test(self, env):
        if not self.needle:
            return True
        content = env.content()
        raw = content.raw_bytes()
        if self.ascii:
            verdict = _fast_scan(raw, self.needle_b, self.with_header)
            if verdict is not None:
                return verdict
        return _slow_scan(content, self.needle, self.with_header, self.contains)


_ENCODED_MARKERS = (b"BASE64", b"QUOTED-PRINTABLE", b"UTF-16", b"UTF-32", b"UTF-7")


_TOP_CT_RE = re.compile(rb"^CONTENT-TYPE[ \t]*:[ \t]*([^;\r\n]*)", re.MULTILINE)


def _fast_scan(raw: bytes, needle: bytes, with_header: bool) -> bool | None:
    """Answer from the raw bytes when that is exact; None when decoding is needed.

    An ASCII needle (upper case: its i;unicode-casemap form) absent from the upper-cased raw
    bytes cannot appear after decoding either, unless something is encoded (base64, QP,
    UTF-16/7 charsets) or non-ASCII text could map to ASCII letters.  A body hit
    counts only for a single text part, where no MIME headers, boundaries or binary
    attachments can produce it.  The top header is decided on its own: decoded only when it
    has RFC 2047 words.
    """
    up = raw.upper()
    hdr_end = header_end(raw)
    if with_header:
        if up.find(b"=?", 0, hdr_end) >= 0:
            if needle.decode("ascii") in _header_text(to_wire(raw[:hdr_end])):
                return True
        elif b"  " in needle or b"\t" in needle:
            pass  # header values are matched squeezed: such a needle cannot match them
        elif up.find(needle, 0, hdr_end) >= 0:
            return True
        elif b" " in needle and needle in _squeeze(up[:hdr_end]):
            return True  # only a needle with a space can match across a fold or a run
    m = _TOP_CT_RE.search(up, 0, hdr_end)
    ctype = m.group(1).strip() if m else b"TEXT/PLAIN"
    simple = ctype.startswith(b"TEXT/")
    # A single part's encoding and charset are in the top header; parts of a multipart
    # carry their own, anywhere in the body.
    scan_end = hdr_end if simple else len(up)
    for marker in _ENCODED_MARKERS:
        if up.find(marker, 0, scan_end) >= 0:
            return None
    if up.find(needle, 0 if with_header else hdr_end) < 0:
        # Absent from the bytes: absent from the text too, unless non-ASCII letters could
        # decompose into it ("josé" holds "jose" once decomposed).
        return False if up.isascii() else None
    return True if simple and up.find(needle, hdr_end) >= 0 else None


def _squeeze(text: bytes) -> bytes:
    """Header text with folding undone and whitespace runs as one space (Dovecot matches
    header values that way)."""
    if b"\n" in text:
        text = _FOLD_RE.sub(b" ", text)
    if b"  " in text or b"\t" in text:
        text = _WSP_RE.sub(b" ", text)
    return text


_FOLD_RE = re.compile(rb"\r?\n(?=[ \t])")
_WSP_RE = re.compile(rb"[ \t]+")
_WSP_STR_RE = re.compile(r"[ \t]+")


def _slow_scan(content, needle: str, with_header: bool, contains: Callable) -> bool:
    """BODY: the decoded text parts; TEXT: also every header (the message's, each part's
    MIME header and encapsulated messages' headers), as Dovecot searches them."""
    wire = content.wire()
    root = content.tree()
    stack = [root]
    while stack:
        part = stack.pop()
        if with_header and needle in _header_text(wire[part.start : part.body_start]):
            return True
        if part.is_multipart:
            stack.extend(reversed(part.children))
        elif part.is_message:
            stack.append(part.message)
        elif not part.has_content_type or part.ctype in ("text", "message"):
            # Binary attachments are not text (Dovecot without FTS agrees); message/*
            # leaves such as delivery-status are.
            if contains(part_text(wire, part)):
                return True
    return False


def _header_text(block: bytes) -> str:
    """A header block as searchable text: unfolded, RFC 2047 words decoded, whitespace runs
    squeezed, case-mapped.

    Decoding the block in one pass (instead of field by field) is what keeps SEARCH TEXT
    cheap; field boundaries stay as line ends, so a needle never spans two fields."""
    return fold(_WSP_STR_RE.sub(" ", decode_header_value(block)))


class _Env:
    __slots__ = ("msg", "seq", "ctx", "_content")

    def __init__(self, ctx: SearchContext):
        self.ctx = ctx
        self.msg = None
        self.seq = 0
        self._content = None

    def content(self):
        if self._content is None:
            if self.ctx.content_loader is None:
                raise ImapNo("SERVERBUG", "Message content unavailable for SEARCH")
            self._content = self.ctx.content_loader(self.msg)
        return self._content


# --- the program and its context -----------------------------------------------------------


@dataclass
class SearchProgram:
    root: _Node
    charset: str = "UTF-8"
    wants_modseq: bool = False  # a MODSEQ key was used (RFC 7162 §3.1.5)
    uses_saved: bool = False  # `$` appears (RFC 5182)

    @property
    def needs_content(self) -> bool:
        return self.root.cost > INDEX

    @property
    def keys(self) -> int:
        """Its nodes, all levels together: every key, and each AND, OR and NOT joining them."""
        count, stack = 0, [self.root]
        while stack:
            node = stack.pop()
            count += 1
            if isinstance(node, _And):
                stack.extend(node.children)
            elif isinstance(node, _Or):
                stack += (node.a, node.b)
            elif isinstance(node, _Not):
                stack.append(node.a)
        return count

    def runs_inline(self, messages: int) -> bool:
        """Cheap enough to evaluate on the reactor over `messages` messages: index fields
        only, and at most INLINE_TESTS key tests in all.  Why the bound: a command line
        holds thousands of keys ("1:* 1:* ..."), and keys times messages is the work; past
        it the search runs in the thread pool like one that reads message text, so no
        client's search holds the other sessions up for longer than that."""
        return not self.needs_content and self.keys * messages <= INLINE_TESTS

    @property
    def needs_body(self) -> bool:
        return self.root.cost >= BODY


@dataclass
class SearchContext:
    content_loader: Callable | None = None
    recent_uids: set[int] = field(default_factory=set)
    saved_uids: list[int] | set[int] | None = None
    now: float = field(default_factory=time.time)
    # filled by evaluate():
    count: int = 0
    max_uid: int = 0
    saved_uids_set: frozenset[int] = frozenset()
    _matchers: dict = field(default_factory=dict)

    def member(self, node: _SeqSet, n: int, largest: int) -> bool:
        f = self._matchers.get(id(node))
        if f is None:
            f = node.seqset.matcher(largest)
            self._matchers[id(node)] = f
        return f(n)


def context_for(session, view) -> SearchContext:
    """The context SEARCH, SORT and THREAD evaluate in: the selected view's \\Recent set, the
    session's saved result (RFC 5182 `$`) and the folder's parsed-message cache."""
    return SearchContext(
        content_loader=view.folder.parsed_loader(in_thread=True),
        recent_uids=set(view.recent),
        saved_uids=list(getattr(session, "saved_uids", None) or ()),
    )


def evaluate_seqs(program: SearchProgram, messages, context: SearchContext) -> list[tuple]:
    """`(seq, msg)` for every message of the view that matches, in sequence order."""
    context.count = len(messages)
    context.max_uid = messages[-1].uid if messages else 0
    context.saved_uids_set = frozenset(context.saved_uids or ())
    context._matchers = {}
    root = program.root
    out = []
    env = _Env(context)
    if isinstance(root, _All):
        return [(i + 1, m) for i, m in enumerate(messages)]
    for i, m in enumerate(messages):
        env.msg = m
        env.seq = i + 1
        env._content = None
        if root.test(env):
            out.append((i + 1, m))
    return out


def evaluate(program: SearchProgram, messages, context: SearchContext) -> list:
    """The matching Messages of `messages` (the session view, in sequence order)."""
    return [m for _, m in evaluate_seqs(program, messages, context)]


def freeze_numbers(program: SearchProgram, messages, context: SearchContext) -> SearchProgram:
    """The program with its message sets fixed as they are now among `messages` (sequence
    numbers to the UIDs they name, `*` to the highest UID, `$` to the saved result), for a
    search evaluated again as the mailbox changes (RFC 5267 §4.3: such numbers are evaluated
    when the command is received)."""
    count = len(messages)
    max_uid = messages[-1].uid if messages else 0

    def fixed(node: _SeqSet) -> _UidIn:
        if node.seqset.dollar:
            return _UidIn(frozenset(context.saved_uids or ()).__contains__)
        if node.uid:
            # A UID range keeps naming the UIDs it names, new ones too; only `*` is fixed.
            return _UidIn(node.seqset.matcher(max_uid))
        member = node.seqset.matcher(count)
        return _UidIn(frozenset(m.uid for i, m in enumerate(messages, 1) if member(i)).__contains__)

    def walk(node: _Node) -> _Node:
        if isinstance(node, _SeqSet):
            return fixed(node)
        if isinstance(node, _And):
            return _And([walk(c) for c in node.children])
        if isinstance(node, _Or):
            return _Or(walk(node.a), walk(node.b))
        if isinstance(node, _Not):
            return _Not(walk(node.a))
        return node

    return dataclasses.replace(program, root=walk(program.root))


def highest_modseq(messages) -> int:
    return max((m.modseq for m in messages), default=0)


# --- parsing ---------------------------------------------------------------------------------

_SIMPLE_FLAGS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"FROM": b"from", "TO": b"to", "CC": b"cc", "BCC": b"bcc", "SUBJECT": b"subject"}
_DATE_KEYS = {
    "BEFORE": ("internal", "BEFORE"),
    "ON": ("internal", "ON"),
    "SINCE": ("internal", "SINCE"),
    "SENTBEFORE": ("sent", "BEFORE"),
    "SENTON": ("sent", "ON"),
    "SENTSINCE": ("sent", "SINCE"),
    "SAVEDBEFORE": ("saved", "BEFORE"),
    "SAVEDON": ("saved", "ON"),
    "SAVEDSINCE": ("saved", "SINCE"),
}
_SEQSET_RE = re.compile(r"[0-9*:,]+\Z")
MAX_DEPTH = 100
# Key tests (keys times messages) a search may make on the reactor: about 10 ms.
INLINE_TESTS = 50_000


def fold(text: str) -> str:
    """Comparison form of text: i;unicode-casemap (RFC 5051), the comparator SEARCH uses at
    I18NLEVEL=1 (RFC 5255 §4.2, §4.3), so "jose" finds "José" and "ΣΟΦΟΣ" finds "σοφος"."""
    return casemap(text)


def decode_search_string(value, charset: str) -> str:
    """A search string (bytes or Atom) in the given charset, case-mapped for matching."""
    if isinstance(value, list):
        raise ImapBad("Expected a string")
    if isinstance(value, str):
        return fold(value)
    try:
        return fold(value.decode(charset))
    except (UnicodeDecodeError, LookupError):
        return fold(value.decode("utf-8", "replace"))


def _check_charset(charset) -> str:
    if isinstance(charset, (bytes, bytearray)):
        charset = charset.decode("ascii", "replace")
    if not isinstance(charset, str):
        raise ImapBad("Invalid CHARSET")
    up = charset.upper()
    if up in ("UTF-8", "UTF8"):
        return "utf-8"
    if up in ("US-ASCII", "ASCII"):
        return "ascii"
    # Any charset Python can decode is taken (Dovecot takes what iconv knows).
    try:
        if charset.isascii() and 0 < len(charset) < 64:
            return codecs.lookup(charset).name
    except LookupError:
        pass
    # RFC 3501 §6.4.4: unsupported charset -> NO [BADCHARSET (list)]
    raise ImapNo("BADCHARSET (" + " ".join(SUPPORTED_CHARSETS) + ")", "Unsupported charset")


def parse_search(args: list, charset: str | None = None) -> SearchProgram:
    """Search criteria (the arguments after any RETURN option) into a SearchProgram.

    A leading `CHARSET name` is accepted here too.  Raises ImapBad on syntax errors and
    ImapNo [BADCHARSET] for a charset other than UTF-8 / US-ASCII.
    """
    args = list(args)
    if len(args) >= 2 and isinstance(args[0], Atom) and args[0].upper() == "CHARSET":
        charset = args[1]
        args = args[2:]
    cs = _check_charset(charset) if charset is not None else "utf-8"
    if not args:
        raise ImapBad("Missing search criteria")
    p = _Parser(args, cs)
    keys = []
    while p.pos < len(args):
        keys.append(p.key(0))
    root = keys[0] if len(keys) == 1 else _And(keys)
    return SearchProgram(root, cs, p.wants_modseq, p.uses_saved)


class _Parser:
    def __init__(self, tokens: list, charset: str):
        self.tokens = tokens
        self.pos = 0
        self.charset = charset
        self.wants_modseq = False
        self.uses_saved = False

    def next(self, what: str):
        if self.pos >= len(self.tokens):
            raise ImapBad(f"Missing {what} in SEARCH")
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def string(self) -> str:
        return decode_search_string(self.next("string"), self.charset)

    def number(self) -> int:
        t = self.next("number")
        if not isinstance(t, Atom) or not t.isdigit() or len(t) > 20 or int(t) >= 1 << 64:
            raise ImapBad("Expected a number in SEARCH")  # 64-bit at most, as Dovecot
        return int(t)

    def date(self) -> tuple[int, int, int]:
        t = self.next("date")
        if isinstance(t, list):
            raise ImapBad("Expected a date")
        if isinstance(t, (bytes, bytearray)):
            t = t.decode("ascii", "replace")
        d = parse_date(t)
        if d is None:
            raise ImapBad("Invalid date in SEARCH")
        return d

    def flag(self) -> str:
        # KEYWORD takes a flag-keyword atom; system flags are tolerated as Dovecot does.
        t = self.next("flag")
        if not isinstance(t, Atom) or not t:
            raise ImapBad("Invalid keyword in SEARCH")
        return str(t)

    def key(self, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            raise ImapBad("LIMIT", "Search criteria nested too deeply")
        t = self.next("search key")
        if isinstance(t, list):
            if not t:
                raise ImapBad("Empty parenthesized search key")
            sub = _Parser(t, self.charset)
            keys = []
            while sub.pos < len(t):
                keys.append(sub.key(depth + 1))
            self.wants_modseq |= sub.wants_modseq
            self.uses_saved |= sub.uses_saved
            return keys[0] if len(keys) == 1 else _And(keys)
        if not isinstance(t, Atom):
            raise ImapBad("Invalid search key")
        up = t.upper()
        if up == "ALL":
            return _All()
        if up in _SIMPLE_FLAGS:
            return _Flag(*_SIMPLE_FLAGS[up])
        if up in ("RECENT", "NEW", "OLD"):
            return _Recent(up)
        if up in _HEADER_KEYS:
            return _Header((_HEADER_KEYS[up],), self.string())
        if up == "HEADER":
            name = self.next("header name")
            if isinstance(name, list):
                raise ImapBad("Invalid header name")
            if isinstance(name, str):
                name = name.encode("utf-8")
            return _Header((bytes(name).lower().strip(),), self.string())
        if up in ("BODY", "TEXT"):
            return _BodyText(self.string(), up == "TEXT")
        if up in _DATE_KEYS:
            which, op = _DATE_KEYS[up]
            day = self.date()
            node = {"internal": _InternalDate, "sent": _SentDate, "saved": _SaveDate}[which]
            return node(op, day)
        if up in ("EMAILID", "THREADID"):
            wanted = self.next("object id")
            if not isinstance(wanted, Atom) or not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", wanted):
                raise ImapBad(f"Invalid {up}")
            # no THREADID is ever given out (FETCH THREADID is NIL), so none matches
            return _EmailId(str(wanted)) if up == "EMAILID" else _Not(_All())
        if up == "SAVEDATESUPPORTED":
            return _All()  # RFC 8514 §5: every mailbox here keeps save dates
        if up in ("LARGER", "SMALLER"):
            return _Size(up == "LARGER", self.number())
        if up == "KEYWORD":
            return _Flag(self.flag(), True)
        if up == "UNKEYWORD":
            return _Flag(self.flag(), False)
        if up == "NOT":
            return _Not(self.key(depth + 1))
        if up == "OR":
            a = self.key(depth + 1)
            b = self.key(depth + 1)
            return _Or(a, b)
        if up == "UID":
            s = self.next("UID set")
            seqset = parse_sequence_set(s, allow_dollar=True)
            self.uses_saved |= seqset.dollar
            return _SeqSet(seqset, uid=True)
        if up == "MODSEQ":
            # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
            if self.pos < len(self.tokens) and not (
                isinstance(self.tokens[self.pos], Atom) and self.tokens[self.pos].isdigit()
            ):
                self.next("entry name")
                et = self.next("entry type")
                if not isinstance(et, Atom) or et.lower() not in ("priv", "shared", "all"):
                    raise ImapBad("Invalid MODSEQ entry type")
            self.wants_modseq = True
            return _Modseq(self.number())
        if up in ("OLDER", "YOUNGER"):
            secs = self.number()
            if secs == 0:
                raise ImapBad(f"{up} needs an interval of at least one second")  # RFC 5032 §4
            return _Within(up == "OLDER", secs)
        if t == "$" or _SEQSET_RE.match(t):
            seqset = parse_sequence_set(t, allow_dollar=True)
            self.uses_saved |= seqset.dollar
            return _SeqSet(seqset, uid=False)
        raise ImapBad(f"Unknown search key {t[:40]}")


_DATE_RE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_MONTH_NUM = {
    k.upper(): v
    for k, v in {
        "Jan": 1,
        "Feb": 2,
        "Mar": 3,
        "Apr": 4,
        "May": 5,
        "Jun": 6,
        "Jul": 7,
        "Aug": 8,
        "Sep": 9,
        "Oct": 10,
        "Nov": 11,
        "Dec": 12,
    }.items()
}


def parse_date(text: str) -> tuple[int, int, int] | None:
    """RFC 3501 §9 `date` (`1-Feb-1994`, optionally quoted) to (year, month, day)."""
    text = text.strip('"')
    m = _DATE_RE.match(text)
    if not m:
        return None
    day, mon, year = int(m.group(1)), _MONTH_NUM.get(m.group(2).upper()), int(m.group(3))
    if mon is None or not 0 <= day <= 31:  # day 0 is accepted by Dovecot too
        return None
    return (year, mon, day)


def sent_day(fields) -> tuple[int, int, int] | None:
    """The Date: header's calendar day as written (its own zone; RFC 3501 §6.4.4)."""
    parsed = parse_date_header(first_value(fields, b"date"))
    return parsed[0] if parsed else None


# --- RETURN options and result formatting ----------------------------------------------------


@dataclass
class SearchOptions:
    """RFC 4731 RETURN options; `esearch` is True when RETURN was given at all."""

    esearch: bool = False
    min: bool = False
    max: bool = False
    count: bool = False
    all: bool = False
    save: bool = False  # RFC 5182 SEARCHRES
    update: bool = False  # RFC 5267 §4.3: report later changes to the result
    context: bool = False  # RFC 5267 §4.2: a hint only
    partial: str | None = None  # RFC 9394: the range as the client wrote it ("1:100", "-1:-50")


def parse_return_options(args: list) -> tuple[SearchOptions, list]:
    """A leading `RETURN (opts)` (RFC 4731 §3.1; ESORT RFC 5267 §3; CONTEXT and UPDATE
    RFC 5267 §4; PARTIAL RFC 9394 §3) and the arguments after it."""
    opts = SearchOptions()
    args = list(args)
    if not (args and isinstance(args[0], Atom) and args[0].upper() == "RETURN"):
        return opts, args
    if len(args) < 2 or not isinstance(args[1], list):
        raise ImapBad("RETURN needs a list of options")
    opts.esearch = True
    items = args[1]
    i = 0
    while i < len(items):
        o = items[i]
        if not isinstance(o, Atom):
            raise ImapBad("Invalid RETURN option")
        up = o.upper()
        if up in ("MIN", "MAX", "COUNT", "ALL", "SAVE", "UPDATE", "CONTEXT"):
            setattr(opts, up.lower(), True)
        elif up == "PARTIAL" and i + 1 < len(items) and isinstance(items[i + 1], Atom):
            partial_positions(items[i + 1], 1)  # validates
            opts.partial = str(items[i + 1])
            i += 1
        else:
            raise ImapBad(f"Unknown RETURN option {o[:30]}")
        i += 1
    if opts.partial is not None and opts.all:
        raise ImapBad("PARTIAL and ALL cannot both be returned")  # RFC 9394 §3.1
    if not items:
        opts.all = True  # RFC 4731 §3.1: RETURN () means RETURN (ALL)
    return opts, args[2:]


_PARTIAL_RE = re.compile(r"(-?)([1-9][0-9]{0,9}):(-?)([1-9][0-9]{0,9})\Z")


def partial_positions(text: str, total: int) -> range:
    """The 0-based positions a PARTIAL range names among `total` results (RFC 9394 §3.1:
    "1:100" counts from the first, "-1:-100" from the last, either order of the ends)."""
    m = _PARTIAL_RE.match(text)
    if not m or m.group(1) != m.group(3):
        raise ImapBad("Invalid PARTIAL range")
    a, b = sorted((int(m.group(2)), int(m.group(4))))
    if m.group(1):  # from the end: -1 is the last
        return range(max(total - b, 0), max(total - a + 1, 0))
    return range(min(a - 1, total), min(b, total))


def parse_search_command(args: list) -> tuple[SearchOptions, SearchProgram]:
    """`[RETURN (opts)] [CHARSET cs] criteria` of a SEARCH command (RFC 4731 §3.1)."""
    opts, rest = parse_return_options(args)
    return opts, parse_search(rest)


def saved_result(opts: SearchOptions, uids: list[int]) -> list[int]:
    """The UIDs SAVE keeps: all matches, or only the MIN/MAX ones when just those were asked
    (RFC 5182 §2.4)."""
    if not uids:
        return []
    if (opts.min or opts.max) and not (opts.all or opts.count):
        keep = []
        if opts.min:
            keep.append(min(uids))
        if opts.max:
            keep.append(max(uids))
        return sorted(set(keep))
    return sorted(uids)


def format_search(numbers, modseq: int | None = None) -> bytes:
    """`* SEARCH n n n` (RFC 3501 §7.2.5), with `(MODSEQ m)` when given (RFC 7162 §3.1.5)."""
    out = b"* SEARCH"
    if numbers:
        out += b" " + b" ".join(b"%d" % n for n in numbers)
        if modseq is not None:
            out += b" (MODSEQ %d)" % modseq
    return out + b"\r\n"


def format_esearch(
    tag: str, uid: bool, numbers, opts: SearchOptions, modseq: int | None = None, ordered=False
) -> bytes | None:
    """`* ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [COUNT n] [ALL set] [PARTIAL (r set)]
    [MODSEQ m]` or None when nothing is to be sent (SAVE alone, RFC 5182 §2.1).

    `ordered`: `numbers` are in SORT order (ESORT, RFC 5267 §3.1): MIN and MAX are the first
    and last sorted, ALL keeps the order; otherwise they are ascending."""
    if opts.save and not (opts.min or opts.max or opts.count or opts.all or opts.partial):
        return None
    out = b'* ESEARCH (TAG "' + tag.encode("ascii", "replace") + b'")'
    if uid:
        out += b" UID"
    nums = list(numbers)
    if nums:
        if opts.min:
            out += b" MIN %d" % (nums[0] if ordered else min(nums))
        if opts.max:
            out += b" MAX %d" % (nums[-1] if ordered else max(nums))
    if opts.count:
        out += b" COUNT %d" % len(nums)
    if nums and opts.all:
        out += b" ALL " + _number_set(nums, ordered)
    if opts.partial is not None:
        picked = [nums[i] for i in partial_positions(opts.partial, len(nums))]
        found = _number_set(picked, ordered) if picked else b"NIL"
        out += b" PARTIAL (" + opts.partial.encode() + b" " + found + b")"
    if nums and modseq is not None:
        out += b" MODSEQ %d" % modseq
    return out + b"\r\n"


def format_context_update(tag: str, uid: bool, kind: str, runs: list[tuple[int, list[int]]]):
    """`* ESEARCH (TAG "t") [UID] ADDTO (pos set pos set ...)` or `REMOVEFROM (...)`
    (RFC 5267 §4.3.3, §4.3.4): each run is a context position and the numbers that start
    there, in the requested order."""
    out = b'* ESEARCH (TAG "' + tag.encode("ascii", "replace") + b'")'
    if uid:
        out += b" UID"
    body = b" ".join(b"%d " % pos + _number_set(nums, True) for pos, nums in runs)
    return out + b" " + kind.encode() + b" (" + body + b")\r\n"


def _number_set(nums: list[int], ordered: bool) -> bytes:
    if not ordered:
        return format_sequence_set(nums).encode("ascii")
    # RFC 5267 §3.1: the sort order kept, runs of consecutive ascending numbers as ranges
    runs: list[list[int]] = []
    for n in nums:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ",".join(f"{a}" if a == b else f"{a}:{b}" for a, b in runs).encode("ascii")
