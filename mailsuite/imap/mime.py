"""Raw message bytes to a MIME tree with exact wire offsets, and what IMAP derives from it.

Why our own parser instead of `email.message_from_bytes`: IMAP needs byte-exact sizes, line
counts and section boundaries *as sent* (CRLF line ends), and it must never fail on the
broken MIME real mail is full of.  The parser here works on the CRLF ("wire") form of the
message and only records offsets; nothing is decoded until a caller asks.

Pieces (all pure, none raises on any input):

    wire = to_wire(raw)                       # LF or CRLF in, CRLF out (what the client sees)
    header_block(raw) -> bytes                # top-level header in wire form, blank line incl.
    fields = parse_fields(block)              # [(lname, raw_field_bytes)] in order
    filter_fields(block, {b"from", b"to"}, exclude=False)   # HEADER.FIELDS[.NOT] text
    root = parse_message(wire)                # MimePart tree (offsets into `wire`)
    find_part(root, (2, 1)) -> MimePart|None  # RFC 3501 §6.4.5 part numbering
    envelope(fields) -> nested value          # RFC 3501 §7.4.2 ENVELOPE, for format_value
    bodystructure(wire, root, extensible)     # BODY / BODYSTRUCTURE nested value
    decode_header_value(raw) -> str           # RFC 2047 decoding for SEARCH/SORT
    part_text(wire, part) -> str              # transfer- and charset-decoded text (SEARCH)
    decode_transfer(body, encoding) -> bytes  # BINARY (RFC 3516)

`MessageContent(raw)` bundles these lazily for one message: FETCH and SEARCH take a
"content" object with `.header()`, `.wire()`, `.tree()`, `.envelope_bytes()`,
`.bodystructure_bytes(ext)`; `mailsuite.store.parsed_cache.CachedContent` offers the same
interface backed by the on-disk cache.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import codecs
import functools
import re
from dataclasses import dataclass, field

from mailsuite.imap.response import format_value

__all__ = [
    "MimePart",
    "MessageContent",
    "to_wire",
    "header_block",
    "parse_fields",
    "filter_fields",
    "field_value",
    "first_value",
    "parse_message",
    "find_part",
    "envelope",
    "envelope_bytes",
    "bodystructure",
    "parse_addresses",
    "parse_params",
    "decode_header_value",
    "decode_transfer",
    "part_text",
    "UnknownTransferEncoding",
]

# Parts nested deeper than this are treated as opaque leaves (Dovecot caps depth too); a
# message built to make us recurse forever gets a shallow tree instead of a crash.
MAX_DEPTH = 40
MAX_PARTS = 5000


# --- line ends ------------------------------------------------------------------------------


def to_wire(raw: bytes) -> bytes:
    """Bytes with CRLF line ends (RFC 3501 §2.2 / RFC 5322: what a client receives)."""
    if b"\r\n" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    return raw.replace(b"\n", b"\r\n")


def _header_end_raw(raw: bytes) -> int:
    """Offset just past the header's blank line in raw (LF or CRLF) data; len(raw) if none."""
    if raw.startswith(b"\n"):
        return 1
    if raw.startswith(b"\r\n"):
        return 2
    i = raw.find(b"\n\n")
    # a CRLF blank line can only come first if it starts before the LF one
    j = raw.find(b"\n\r\n", 0, len(raw) if i < 0 else i + 2)
    if i < 0 and j < 0:
        return len(raw)
    if j >= 0 and (i < 0 or j < i):
        return j + 3
    return i + 2


def header_block(raw: bytes) -> bytes:
    """The top-level header of raw message bytes in wire form, including the blank line."""
    return to_wire(raw[: _header_end_raw(raw)])


# --- header fields --------------------------------------------------------------------------

# One field: a name (any printable but ":", 8-bit tolerated), optional WSP (obsolete syntax),
# colon, the rest of the line and any continuation lines (RFC 5322 §2.2.3 folding).  Lines
# that are not fields (no colon) match the second alternative and are skipped by callers.
_FIELD_RE = re.compile(
    rb"(?:([^\x00-\x20\x7f:]+)[ \t]*:[^\n]*|[^\n]*)(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*"
)
_UNFOLD_RE = re.compile(rb"\r?\n(?=[ \t])")


def parse_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """`[(lowercased name, raw field incl. its CRLF)]` for every well-formed field, in order."""
    out = []
    for m in _FIELD_RE.finditer(block):
        name = m.group(1)
        if name:
            out.append((name.lower(), m.group(0)))
    return out


def field_value(raw_field: bytes) -> bytes:
    """Unfolded value of a raw field: after the colon, leading WSP and the line end dropped."""
    v = raw_field[raw_field.index(b":") + 1 :]
    v = _UNFOLD_RE.sub(b"", v)
    return v.strip(b" \t\r\n")


def first_value(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, raw in fields:
        if n == name:
            return field_value(raw)
    return None


def filter_fields(block: bytes, names: frozenset[bytes] | set[bytes], exclude: bool) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS (exclude=False) / HEADER.FIELDS.NOT (exclude=True).

    `names` are lower-case.  Matching is case-insensitive but otherwise exact; the delimiting
    blank line is always included in the result.
    """
    if not exclude:
        # Hot path (clients page through HEADER.FIELDS of every message): one regex that
        # only stops at the requested fields.
        found = _fields_regex(frozenset(names)).findall(block)
        if found and not found[-1].endswith(b"\n"):
            found[-1] += b"\r\n"
        found.append(b"\r\n")
        return b"".join(found)
    out = []
    for m in _FIELD_RE.finditer(block):
        f = m.group(0)
        name = m.group(1)
        if name is None:
            if f in (b"\r\n", b"\n", b""):
                continue  # the blank line (added back below) or the end
        elif name.lower() in names:
            continue
        if not f.endswith(b"\n"):
            f += b"\r\n"
        out.append(f)  # lines that are not fields stay, as Dovecot keeps them
    if block.endswith(b"\r\n\r\n") or block == b"\r\n":
        out.append(b"\r\n")  # the blank line only when the header has one
    return b"".join(out)


@functools.lru_cache(maxsize=256)
def _fields_regex(names: frozenset[bytes]) -> re.Pattern:
    alts = b"|".join(re.escape(n) for n in sorted(names)) or b"(?!)"
    return re.compile(
        rb"^(?:" + alts + rb")[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*",
        re.IGNORECASE | re.MULTILINE,
    )


# --- MIME tree ------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class MimePart:
    """One entity: header at [start, body_start), body at [body_start, end) of the wire bytes.

    `children` for multipart; `message` is the encapsulated message's root part for
    message/rfc822 (and message/global).  Type names keep the header's spelling in
    `type_raw`/`subtype_raw` and are lower-case in `ctype`/`csubtype` for decisions.
    """

    start: int
    body_start: int
    end: int
    fields: list[tuple[bytes, bytes]]
    ctype: str = "text"
    csubtype: str = "plain"
    type_raw: str | None = None
    subtype_raw: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    has_content_type: bool = False
    children: list[MimePart] = field(default_factory=list)
    message: MimePart | None = None
    closed_at_end: bool = False
    # A message header without MIME-Version or Content-Type has no MIME meaning: its other
    # Content-* fields are ignored, as Dovecot does (RFC 2045 §4 needs MIME-Version).
    mime_headers: bool = True

    @property
    def is_multipart(self) -> bool:
        return self.ctype == "multipart" and self.has_content_type

    @property
    def is_message(self) -> bool:
        return self.message is not None

    def get(self, name: bytes) -> bytes | None:
        if not self.mime_headers and name.startswith(b"content-"):
            return None
        return first_value(self.fields, name)

    def last(self, name: bytes) -> bytes | None:
        if not self.mime_headers and name.startswith(b"content-"):
            return None
        value = None
        for n, raw in self.fields:
            if n == name:
                value = field_value(raw)
        return value

    def param(self, name: str) -> str | None:
        name = name.lower()
        for k, v in self.params:
            if k.lower() == name:
                return v
        return None

    @property
    def encoding_raw(self) -> str | None:
        """The Content-Transfer-Encoding as written: the first field whose value is one
        token (an invalid one is skipped, as Dovecot does)."""
        if not self.mime_headers:
            return None
        for name, raw in self.fields:
            if name == b"content-transfer-encoding":
                v = _strip_comments(field_value(raw).decode("utf-8", "surrogateescape")).strip()
                if v and _is_token(v):
                    return v
        return None

    @property
    def encoding(self) -> str:
        v = self.encoding_raw
        return v.lower() if v else "7bit"

    @property
    def transfer_encoding(self) -> str:
        """The encoding to undo when decoding content (SEARCH, BINARY): honoured even in a
        message without MIME-Version, as Dovecot decodes it there too."""
        if self.mime_headers:
            return self.encoding
        self.mime_headers = True
        try:
            return self.encoding
        finally:
            self.mime_headers = False


def _find_header_end(data: bytes, start: int, end: int) -> int:
    if data.startswith(b"\r\n", start) and start + 2 <= end:
        return start + 2
    i = data.find(b"\r\n\r\n", start, end)
    return end if i < 0 else i + 4


def parse_message(wire: bytes) -> MimePart:
    """Parse wire (CRLF) bytes into a MimePart tree; never raises."""
    counter = [0]
    return _parse_entity(wire, 0, len(wire), 0, False, counter, message_root=True)


def _parse_entity(
    data: bytes,
    start: int,
    end: int,
    depth: int,
    digest: bool,
    counter: list[int],
    message_root: bool = False,
) -> MimePart:
    counter[0] += 1
    body_start = _find_header_end(data, start, end)
    fields = parse_fields(data[start:body_start])
    part = MimePart(start, body_start, end, fields)
    ct = first_value(fields, b"content-type")
    if message_root and ct is None and first_value(fields, b"mime-version") is None:
        part.mime_headers = False
    if ct is not None:
        main, params = parse_params(ct)
        t, sep, s = main.partition("/")
        t, s = t.strip(), s.strip()
        if sep and _is_token(t) and _is_token(s):
            part.ctype, part.csubtype = t.lower(), s.lower()
            part.type_raw, part.subtype_raw = t, s
            part.has_content_type = True
        part.params = params
    elif digest:
        # RFC 2046 §5.1.5: parts of multipart/digest default to message/rfc822.
        part.ctype, part.csubtype = "message", "rfc822"
        part.type_raw, part.subtype_raw = "message", "rfc822"
        part.has_content_type = True
    if depth >= MAX_DEPTH or counter[0] > MAX_PARTS:
        if part.ctype in ("multipart", "message"):
            part.ctype, part.csubtype = "application", "octet-stream"
            part.type_raw, part.subtype_raw = "application", "octet-stream"
        return part
    if part.ctype == "multipart" and part.has_content_type:
        boundary = part.param("boundary")
        if boundary is None:
            # RFC 2046 §5.1.1 requires a boundary; without one there are no parts (reported
            # as one empty text part, as Dovecot does).
            return part
        is_digest = part.csubtype == "digest"
        bnd = boundary.encode("utf-8", "surrogateescape")
        ranges = _split_multipart(data, body_start, end, bnd)
        if ranges and ranges[-1] is _CLOSED_AT_END:
            ranges.pop()
            part.closed_at_end = True
        for s, e in ranges:
            child = _parse_entity(data, s, e, depth + 1, is_digest, counter)
            if child.closed_at_end and data.startswith(b"\r\n", e):
                # A nested multipart's close delimiter line keeps its CRLF; the enclosing
                # delimiter then starts right after it (Dovecot counts it this way too).
                child.end = e + 2
            part.children.append(child)
            if counter[0] > MAX_PARTS:
                break
    elif part.ctype == "message" and part.csubtype == "rfc822":
        # Only message/rfc822 has the envelope form in IMAP4rev1 (RFC 3501 §9 media-message);
        # message/global stays a leaf, as in Dovecot.
        part.message = _parse_entity(
            data, body_start, end, depth + 1, False, counter, message_root=True
        )
    return part


_CLOSED_AT_END = (-1, -1)  # marker: the close delimiter line is the last thing in the range


def _split_multipart(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """Body ranges between `--boundary` delimiter lines (RFC 2046 §5.1.1).

    The CRLF before a delimiter belongs to the delimiter.  A missing close delimiter ends the
    last part at `end`; text after the close delimiter (epilogue) is ignored.  The list ends
    with `_CLOSED_AT_END` when the close delimiter line runs to `end`.
    """
    dash = b"--" + boundary
    parts: list[tuple[int, int]] = []
    cur: int | None = None  # start of the current part's content
    pos = start
    while True:
        if pos == start and data.startswith(dash, start):
            hit, line_start = start, start
        else:
            i = data.find(b"\r\n" + dash, pos, end)
            if i < 0:
                break
            hit, line_start = i + 2, i
        after = hit + len(dash)
        if after > end:
            break
        closing = data.startswith(b"--", after) and after + 2 <= end
        j = after + 2 if closing else after
        # Transport padding (RFC 2046 §5.1.1: LWSP after the boundary) then CRLF or the end.
        while j < end and data[j] in (0x20, 0x09):
            j += 1
        if j < end and not data.startswith(b"\r\n", j) and not closing and j == after:
            # "--bx" is not our delimiter: the boundary is only a prefix of another one
            # (a nested part's boundary may extend ours).  "--b junk" and "--b--junk" are
            # taken as delimiters with the junk ignored, as Dovecot does.
            pos = hit + 1
            continue
        if cur is not None:
            parts.append((cur, max(cur, line_start)))
        if closing:
            if data.find(b"\r\n", j, end) < 0:
                parts.append(_CLOSED_AT_END)
            return parts
        eol = data.find(b"\r\n", j, end)
        cur = end if eol < 0 else eol + 2
        pos = max(cur - 2, hit + 1)
    if cur is not None:
        parts.append((cur, end))
    return parts


def find_part(root: MimePart, path: tuple[int, ...]) -> MimePart | None:
    """The part a section number names (RFC 3501 §6.4.5), or None when there is none.

    A non-multipart message has only part 1 (itself); numbers below a message/rfc822 part
    address the encapsulated message's parts; a leaf part has no sub-parts (Dovecot agrees).
    """
    cur: MimePart | None = None
    msg: MimePart | None = root  # the message or multipart the next number indexes into
    cur_is_message_root = False
    self_step = False
    for n in path:
        if msg is None:
            # below a leaf: a leaf inside a multipart is its own part 1 (once); a message's
            # own single part has no deeper numbers (Dovecot's numbering)
            if n != 1 or cur_is_message_root or self_step:
                return None
            self_step = True
            continue
        if msg.is_multipart:
            if n < 1 or n > len(msg.children):
                return None
            cur = msg.children[n - 1]
            cur_is_message_root = False
        else:
            if n != 1:
                return None
            cur = msg
            cur_is_message_root = True
        if cur.is_multipart:
            msg = cur
        elif cur.is_message:
            msg = cur.message
        else:
            msg = None
    return cur


def iter_leaves(part: MimePart):
    """Leaf parts in order, descending into multiparts and encapsulated messages."""
    if part.is_multipart:
        for c in part.children:
            yield from iter_leaves(c)
    elif part.is_message:
        yield part
        yield from iter_leaves(part.message)
    else:
        yield part


# --- parameters (RFC 2045 §5.1, RFC 2231) ----------------------------------------------------

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~\x80-\U0010ffff]+\Z")


def _is_token(s: str) -> bool:
    return bool(_TOKEN_RE.match(s))


def _strip_comments(s: str) -> str:
    if "(" not in s:
        return s
    out = []
    depth = 0
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if quoted:
            out.append(c)
            if c == "\\" and i + 1 < len(s):
                out.append(s[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == "(":
            depth = 1
        else:
            if c == '"':
                quoted = True
            out.append(c)
        i += 1
    return "".join(out)


def _split_semicolons(s: str) -> list[str]:
    if '"' not in s:
        return s.split(";")
    parts = []
    buf = []
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if quoted:
            buf.append(c)
            if c == "\\" and i + 1 < len(s):
                buf.append(s[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            buf.append(c)
        elif c == ";":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


_QUOTED_VALUE_RE = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.S)


def _unquote(v: str) -> str:
    v = v.strip(" \t\r\n")
    if v.startswith('"'):
        # the quoted string up to its closing quote; anything after it is junk
        inner = _QUOTED_VALUE_RE.match(v).group(1)
        return re.sub(r"\\(.)", r"\1", inner)
    # a token ends at whitespace (RFC 2045 §5.1); what follows is junk, as Dovecot reads it
    return v.split(None, 1)[0] if v else v


_SECTION_RE = re.compile(r"^(.*?)\*(\d+)(\*?)$|^(.*?)(\*)$")


def parse_params(value: bytes) -> tuple[str, list[tuple[str, str]]]:
    """`type/subtype; a=b; c="d"` into (main value, [(name, value)]), never raising.

    Strings are bytes decoded as UTF-8 with surrogateescape, so 8-bit values survive exactly.
    RFC 2231 continuations are merged; an extended (charset'lang'%XX) value keeps its
    encoded form under the name `name*`, as IMAP servers report it in BODYSTRUCTURE.
    """
    s = _strip_comments(value.decode("utf-8", "surrogateescape"))
    pieces = _split_semicolons(s)
    main = pieces[0].strip(" \t\r\n")
    raw: list[tuple[str, str]] = []
    for p in pieces[1:]:
        name, eq, v = p.partition("=")
        name = name.strip(" \t\r\n")
        if not eq or not name:
            continue
        raw.append((name, _unquote(v)))
    return main, _merge_rfc2231(raw)


def _merge_rfc2231(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not any("*" in n for n, _ in raw):
        return raw
    order: list[str] = []
    plain: dict[str, tuple[str, str]] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    names: dict[str, str] = {}
    for name, v in raw:
        m = _SECTION_RE.match(name)
        if m is None:
            key = name.lower()
            if key not in plain and key not in sections:
                order.append(key)
            plain.setdefault(key, (name, v))
            continue
        if m.group(1) is not None:
            base, idx, ext = m.group(1), int(m.group(2)), bool(m.group(3))
        else:
            base, idx, ext = m.group(4), 0, True
        key = base.lower()
        if key not in plain and key not in sections:
            order.append(key)
        names.setdefault(key, base)
        sections.setdefault(key, []).append((idx, ext, v))
    out = []
    # Plain parameters first, then the merged RFC 2231 ones (Dovecot's order).
    order = [k for k in order if k not in sections] + [k for k in order if k in sections]
    for key in order:
        if key in sections:
            segs = sorted(sections[key], key=lambda t: t[0])
            if any(ext for _, ext, _ in segs):
                # An unencoded segment inside an extended value is percent-encoded so the
                # whole value stays in charset'lang'%XX form.
                val = "".join(
                    v if ext else re.sub(r"[^A-Za-z0-9._~-]", lambda m: _pct(m.group(0)), v)
                    for _, ext, v in segs
                )
                out.append((names[key] + "*", val))
            else:
                out.append((names[key], "".join(v for _, _, v in segs)))
        else:
            out.append(plain[key])
    return out


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def decode_rfc2231(value: str) -> str:
    """`utf-8'en'%E2%82%AC` to text (for SEARCH and display, not for BODYSTRUCTURE)."""
    charset, q1, rest = value.partition("'")
    if not q1:
        return value
    _lang, _q2, enc = rest.partition("'")
    data = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), enc).encode(
        "latin-1", "replace"
    )
    return _decode_charset(data, charset)


# --- string conversion helpers --------------------------------------------------------------


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


_CHARSET_ALIASES = {"unicode-1-1-utf-7": "utf-7", "x-unknown": "latin-1", "unknown-8bit": "latin-1"}


def _decode_charset(data: bytes, charset: str | None) -> str:
    """Decode with a MIME charset, falling back to UTF-8 then Latin-1; never raises."""
    cs = (charset or "").strip().strip('"').lower()
    cs = _CHARSET_ALIASES.get(cs, cs)
    if cs and cs not in ("us-ascii", "ascii", "utf-8", "utf8"):
        try:
            codecs.lookup(cs)
            return data.decode(cs, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --- RFC 2047 encoded words -----------------------------------------------------------------

_EW_RE = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_EW_GAP_RE = re.compile(rb"(\?=)[ \t\r\n]+(?==\?[^?\s]+\?[BbQq]\?)")


def decode_header_value(raw: bytes) -> str:
    """Unfolded header value with RFC 2047 encoded-words decoded (whitespace between adjacent
    encoded words dropped, §6.2); 8-bit raw text is taken as UTF-8, else Latin-1."""
    raw = _UNFOLD_RE.sub(b"", raw)
    if b"=?" not in raw:
        return _decode_charset(raw, None)
    raw = _EW_GAP_RE.sub(rb"\1", raw)
    out: list[str] = []
    pos = 0
    for m in _EW_RE.finditer(raw):
        if m.start() > pos:
            out.append(_decode_charset(raw[pos : m.start()], None))
        charset = m.group(1).decode("ascii", "replace").split("*", 1)[0]  # RFC 2231 §5 lang
        enc = m.group(2).upper()
        text = m.group(3)
        try:
            if enc == b"B":
                data = base64.b64decode(text + b"=" * (-len(text) % 4))
            else:
                data = binascii.a2b_qp(text.replace(b"_", b" "))
            out.append(_decode_charset(data, charset))
        except (binascii.Error, ValueError):
            out.append(m.group(0).decode("ascii", "replace"))
        pos = m.end()
    out.append(_decode_charset(raw[pos:], None))
    return "".join(out)


# --- transfer decoding ----------------------------------------------------------------------


class UnknownTransferEncoding(Exception):
    """RFC 3516 §4.2: BINARY of a part whose encoding we cannot undo -> NO [UNKNOWN-CTE]."""


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def decode_transfer(body: bytes, encoding: str, strict: bool = False) -> bytes:
    """Undo Content-Transfer-Encoding; tolerant of broken base64/QP unless strict."""
    enc = encoding.lower()
    if enc in ("7bit", "8bit", "binary", ""):
        return body
    if enc == "base64":
        clean = _B64_JUNK.sub(b"", body)
        clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
        try:
            return base64.b64decode(clean + b"=" * (-len(clean) % 4))
        except (binascii.Error, ValueError):
            return b""
    if enc == "quoted-printable":
        try:
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    if strict:
        raise UnknownTransferEncoding(encoding)
    return body


_CTE_FIELD_RE = re.compile(
    rb"^(content-transfer-encoding[ \t]*:)[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*",
    re.IGNORECASE | re.MULTILINE,
)


def _binary_header(header: bytes) -> bytes:
    """The header with its Content-Transfer-Encoding replaced by `binary`, placed last (as
    Dovecot writes it)."""
    header = _CTE_FIELD_RE.sub(b"", header)
    cte = b"Content-Transfer-Encoding: binary\r\n"
    if header.endswith(b"\r\n\r\n") or header == b"\r\n":
        return header[:-2] + cte + b"\r\n"
    return header + cte


def binary_entity(wire: bytes, part: MimePart, with_header: bool) -> tuple[bytes, bool]:
    """RFC 3516 §4: a section with every leaf's Content-Transfer-Encoding undone.

    Returns (data, decoded_anything).  Decoded leaves get `Content-Transfer-Encoding: binary`
    in their header, so that a whole message or multipart stays self-describing (Dovecot
    does the same).  Raises UnknownTransferEncoding for an encoding we cannot undo.
    """
    header = wire[part.start : part.body_start]
    if part.is_multipart:
        chunks = []
        changed = False
        pos = part.body_start
        for c in part.children:
            chunks.append(wire[pos : c.start])
            data, ch = binary_entity(wire, c, True)
            chunks.append(data)
            changed |= ch
            pos = max(pos, c.end)
        chunks.append(wire[pos : part.end])
        body = b"".join(chunks)
    elif part.is_message:
        body, changed = binary_entity(wire, part.message, True)
    else:
        raw = wire[part.body_start : part.end]
        enc = part.transfer_encoding
        if enc in ("7bit", "8bit", "binary"):
            body, changed = raw, False
        else:
            body, changed = decode_transfer(raw, enc, strict=True), True
            header = _binary_header(header)
    return (header + body if with_header else body), changed


def part_text(wire: bytes, part: MimePart) -> str:
    """The decoded text of a leaf part (for SEARCH BODY/TEXT, RFC 3501 §6.4.4).

    The transfer encoding is undone even in a message without MIME-Version (Dovecot's
    search does so too, although its BODYSTRUCTURE ignores it)."""
    body = wire[part.body_start : part.end]
    data = decode_transfer(body, part.transfer_encoding)
    return _decode_charset(data, part.param("charset"))


# --- dates (RFC 5322 §3.3) -----------------------------------------------------------------------

_DATE_RE = re.compile(
    r"\s*(?:([A-Za-z]+)\s*,\s*)?(\d{1,2})\s+([A-Za-z]+)\s+(\d{2,4})\s+"
    r"(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?(?:\s+(\S+))?"
)
_MONTHS3 = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_ZONES = {
    "ut": 0,
    "gmt": 0,
    "z": 0,
    "est": -5,
    "edt": -4,
    "cst": -6,
    "cdt": -5,
    "mst": -7,
    "mdt": -6,
    "pst": -8,
    "pdt": -7,
}


def parse_date_header(value: bytes | None) -> tuple[tuple[int, int, int], float] | None:
    """A Date: value as ((year, month, day) as written, UTC seconds), or None when invalid.

    As strict as Dovecot's parser, so SEARCH SENT* and SORT DATE agree with it: an optional
    three-letter weekday, day, month name, 2- or 4-digit year (RFC 5322 §4.3), hh:mm[:ss] in
    range, an optional zone (numeric, or a name; unknown names count as +0000).
    """
    if value is None:
        return None
    m = _DATE_RE.match(_strip_comments(value.decode("latin-1")))
    if not m:
        return None
    wday, day, mon, year, hh, mm, ss, zone = m.groups()
    if wday is not None and len(wday) != 3:
        return None
    month = _MONTHS3.get(mon[:3].lower())
    if month is None:
        return None
    y = int(year)
    if len(year) == 2:
        y += 2000 if y < 50 else 1900
    elif len(year) == 3:
        y += 1900
    d, h, mi, se = int(day), int(hh), int(mm), int(ss or 0)
    if not (1 <= d <= calendar.monthrange(y, month)[1] and h < 24 and mi < 60 and se <= 60):
        return None
    offset = 0
    if zone:
        z = zone.lower()
        if z[0] in "+-" and z[1:5].isdigit() and len(z) >= 5:
            offset = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * (-1 if z[0] == "-" else 1)
        else:
            offset = _ZONES.get(z, 0) * 3600
    stamp = calendar.timegm((y, month, d, h, mi, se, 0, 0, 0)) - offset
    return (y, month, d), float(stamp)


# --- addresses (RFC 5322 §3.4) ----------------------------------------------------------------


_ADDR_TOKEN_RE = re.compile(
    rb'[ \t\r\n]+|"((?:[^"\\]|\\.)*)(?:"|\Z)|(\()|([<>,:;@])|(\[[^\]]*\]?)'
    rb'|([^ \t\r\n"(<>,:;@\[\]]+)|(.)',
    re.S,
)
_QUOTED_PAIR_RE = re.compile(rb"\\(.)", re.S)


def _addr_tokens(s: bytes) -> list[tuple[str, bytes]]:
    """Tokens: ("q", quoted) ("c", comment) ("s", special char) ("a", atom/dot-atom text)."""
    toks = []
    pos, n = 0, len(s)
    match = _ADDR_TOKEN_RE.match
    while pos < n:
        m = match(s, pos)
        q, paren, special, literal, atom, other = m.groups()
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


_MISSING_MAILBOX = b"MISSING_MAILBOX"
_MISSING_DOMAIN = b"MISSING_DOMAIN"


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
                    out.append([None, None, _MISSING_MAILBOX, _MISSING_DOMAIN])
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
                        out.append([None, None, _MISSING_MAILBOX, _MISSING_DOMAIN])
                    return False
                name = comments[-1] if comments else None
                out.append([name, None, local or _MISSING_MAILBOX, host or _MISSING_DOMAIN])
                return True
            # a phrase with no address at all
            out.append([b" ".join(words), None, _MISSING_MAILBOX, _MISSING_DOMAIN])
            return True
        if words:
            out.append([b" ".join(words), None, _MISSING_MAILBOX, _MISSING_DOMAIN])
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
        words, comments = self.words()
        t = self.peek()
        if t == ("s", b"<"):
            self.pos += 1
            out.append(self.angle(b" ".join(words) or None))
            return True
        self.pos = start
        local, host, comments = self.addr_spec()
        if local is None and host is None:
            return self.pos != start
        name = comments[-1] if comments else None
        out.append([name, None, local or _MISSING_MAILBOX, host or _MISSING_DOMAIN])
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
        return [name, adl, local or _MISSING_MAILBOX, host or _MISSING_DOMAIN]

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
    toks = _addr_tokens(_UNFOLD_RE.sub(b"", value))
    out = _AddressParser(toks).parse()
    for a in out:
        if a[0] == b"":
            a[0] = None  # `"" <a@b>`: an empty display name is no name
    return out or None


# --- ENVELOPE and BODYSTRUCTURE ---------------------------------------------------------------


_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")
_STRING_FIELDS = (b"date", b"subject", b"in-reply-to", b"message-id")
_WSP_RUN_RE = re.compile(rb"[ \t]+")


def _envelope_parts(fields: list[tuple[bytes, bytes]]):
    """(string values, address lists) of the ENVELOPE fields, Dovecot's way: the last
    occurrence of a string field wins, addresses of repeated address fields add up, values
    are unfolded with leading whitespace dropped, and the subject's whitespace runs become
    single spaces."""
    strings: dict[bytes, bytes] = {}
    addrs: dict[bytes, list] = {}
    for name, raw in fields:
        if name not in _ENVELOPE_NAMES:
            continue
        v = _UNFOLD_RE.sub(b"", raw[raw.index(b":") + 1 :])
        if v.endswith(b"\n"):
            v = v[:-2] if v.endswith(b"\r\n") else v[:-1]
        v = v.lstrip(b" \t")
        if name in _STRING_FIELDS:
            if name == b"subject":
                folded = b"\t" in v or b"\n" in raw[:-1].rstrip(b"\r")
                v = _WSP_RUN_RE.sub(b" ", v).strip(b" ")
                if folded:
                    v = _Literal(v)
            strings[name] = v
        else:
            found = parse_addresses(v)
            if found:
                addrs.setdefault(name, []).extend(found)
    return strings, addrs


def envelope(fields: list[tuple[bytes, bytes]]) -> list:
    """RFC 3501 §7.4.2 ENVELOPE as a nested value for `format_structure`.

    Order: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id.
    Absent fields are NIL, but sender and reply-to default to from.  Values are sent
    unfolded and otherwise raw (encoded-words untouched), as RFC 3501 asks.
    """
    strings, addrs = _envelope_parts(fields)
    lists = {k: _Concat(v) for k, v in addrs.items()}
    frm = lists.get(b"from")
    return [
        strings.get(b"date"),
        strings.get(b"subject"),
        frm,
        lists.get(b"sender") or frm,
        lists.get(b"reply-to") or frm,
        lists.get(b"to"),
        lists.get(b"cc"),
        lists.get(b"bcc"),
        strings.get(b"in-reply-to"),
        strings.get(b"message-id"),
    ]


class _Concat(list):
    """A list whose items are written without SP between them (RFC 3501 §9 env-from etc.)."""


_ENVELOPE_NAMES = frozenset(_ADDRESS_FIELDS + _STRING_FIELDS)


def envelope_bytes(fields: list[tuple[bytes, bytes]]) -> bytes:
    """ENVELOPE serialized directly (the hot path of FETCH ENVELOPE; same output as
    `format_structure(envelope(fields), escape=False)`)."""
    strings, addrs = _envelope_parts(fields)
    get = strings.get
    frm = _addr_list_bytes(addrs.get(b"from"))
    sender = _addr_list_bytes(addrs.get(b"sender"))
    reply_to = _addr_list_bytes(addrs.get(b"reply-to"))
    return b" ".join(
        [
            b"(" + _nstring(get(b"date")),
            _nstring(get(b"subject")),
            frm,
            frm if sender == b"NIL" else sender,
            frm if reply_to == b"NIL" else reply_to,
            _addr_list_bytes(addrs.get(b"to")),
            _addr_list_bytes(addrs.get(b"cc")),
            _addr_list_bytes(addrs.get(b"bcc")),
            _nstring(get(b"in-reply-to")),
            _nstring(get(b"message-id")) + b")",
        ]
    )


def _nstring(v: bytes | None) -> bytes:
    return b"NIL" if v is None else _string(v)


def _addr_list_bytes(addrs: list | None) -> bytes:
    if not addrs:
        return b"NIL"
    # RFC 3501 §9: env-from = "(" 1*address ")": addresses follow each other without SP
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)" % (_nstring(a[0]), _nstring(a[1]), _nstring(a[2]), _nstring(a[3]))
            for a in addrs
        )
        + b")"
    )


class _Raw(bytes):
    """Already-serialized IMAP text inside a structure (emitted verbatim)."""


def _param_list(params: list[tuple[str, str]]) -> list | None:
    if not params:
        return None
    out: list = []
    for k, v in params:
        out.append(_b(k))
        out.append(_b(v))
    return out


# Dovecot spells defaults in lower case; clients compare case-insensitively (RFC 3501 §9).
_EMPTY_TEXT = [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 0, 0]


def bodystructure(wire: bytes, part: MimePart, extensible: bool = True) -> list:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of a part, RFC 3501 §7.4.2."""
    if part.is_multipart:
        if part.children:
            kids = [bodystructure(wire, c, extensible) for c in part.children]
        else:
            # A multipart with no parts cannot be expressed (body-type-mpart needs 1*body);
            # report one empty text/plain part as Dovecot does.
            kids = [list(_EMPTY_TEXT) + ([None, None, None, None] if extensible else [])]
        out = kids + [_b(part.subtype_raw or part.csubtype)]
        if extensible:
            out += [_param_list(part.params)] + _ext_common(part)
        return _Multipart(out)
    if part.has_content_type:
        t, s = _b(part.type_raw or part.ctype), _b(part.subtype_raw or part.csubtype)
    else:
        t, s = b"text", b"plain"  # RFC 2045 §5.2 default: text/plain; charset=us-ascii
    params = _param_list(part.params)
    if part.ctype == "text" and part.param("charset") is None:
        # RFC 2045 §5.2: text defaults to us-ascii; Dovecot reports it explicitly
        params = (params or []) + [b"charset", b"us-ascii"]
    cte = part.encoding_raw
    enc = _b(cte) if cte else b"7bit"
    out = [
        t,
        s,
        params,
        part.get(b"content-id"),
        part.get(b"content-description"),
        enc or b"7bit",
        part.end - part.body_start,
    ]
    if part.is_message:
        inner = part.message
        out.append(_Raw(envelope_bytes(inner.fields)))
        out.append(bodystructure(wire, inner, extensible))
        out.append(wire.count(b"\n", part.body_start, part.end))
    elif part.ctype == "text":
        out.append(wire.count(b"\n", part.body_start, part.end))
    if extensible:
        out.append(part.get(b"content-md5"))
        out += _ext_common(part)
    return out


class _Multipart(list):
    """Marks a multipart body: its children are written without separating spaces
    (RFC 3501 §9 body-type-mpart = 1*body SP media-subtype)."""


def _ext_common(part: MimePart) -> list:
    disp = part.last(b"content-disposition")  # the last one counts, as in Dovecot
    if disp is not None:
        main, params = parse_params(disp)
        dsp = [_b(main), _param_list(params)] if main else None
    else:
        dsp = None
    lang = part.get(b"content-language")
    lang_v = None
    if lang is not None:
        # RFC 3282 language tags, comments dropped; always a list, as Dovecot sends it
        text = _b(_strip_comments(lang.decode("utf-8", "surrogateescape")))
        langs = []
        for item in text.split(b","):
            words = item.split()
            if words:
                langs.append(words[0])
            if len(words) != 1:
                break  # a tag list is comma separated; anything else ends it (as in Dovecot)
        lang_v = langs or None
    return [dsp, lang_v, part.get(b"content-location")]


# Quoted unless 8-bit, CR, LF, NUL, or a quoted-special: Dovecot sends `"` and `\` inside a
# literal rather than escaped, which every client parses (some mishandle the escapes).
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]*\Z")


class _Literal(bytes):
    """A string that goes out as a literal whatever it holds (Dovecot's rule for a subject
    that was folded or had TABs)."""


_ESCAPABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")


def _string(v: bytes, escape: bool = False) -> bytes:
    """quoted when possible, else a literal (RFC 3501 §4.3: 8-bit, CR, LF need literals).

    `escape`: quoted-specials are escaped inside a quoted string (Dovecot does that in
    BODYSTRUCTURE) instead of forcing a literal (what it does in ENVELOPE)."""
    if b"\x00" in v:
        # RFC 3501 §9: no NUL even in a literal; U+FFFD stands in for it, as Dovecot sends
        v = v.replace(b"\x00", b"\xef\xbf\xbd")
    elif not isinstance(v, _Literal):
        if _QUOTABLE_RE.match(v):
            return b'"' + v + b'"'
        if escape and _ESCAPABLE_RE.match(v):
            return b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(v) + v


def format_structure(value, escape: bool = True) -> bytes:
    """Serialize BODYSTRUCTURE (escape=True) or ENVELOPE (escape=False) values; multipart
    children are not space-separated.  See `_string` for the quoting difference."""
    out: list[bytes] = []
    _emit_value(value, out, escape)
    return b"".join(out)


def _emit_value(value, out: list[bytes], escape: bool = True) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, _Raw):
        out.append(value)
    elif isinstance(value, bytes):
        out.append(_string(value, escape))
    elif isinstance(value, list):
        out.append(b"(")
        if isinstance(value, _Concat):
            for v in value:
                _emit_value(v, out, escape)
        elif isinstance(value, _Multipart):
            rest = False
            for v in value:
                if not rest and not isinstance(v, list):
                    rest = True  # after the child bodies: SP-separated subtype and extensions
                if rest:
                    out.append(b" ")
                _emit_value(v, out, escape)
        else:
            first = True
            for v in value:
                if not first:
                    out.append(b" ")
                first = False
                _emit_value(v, out, escape)
        out.append(b")")
    elif isinstance(value, int):
        out.append(b"%d" % value)
    elif isinstance(value, str):
        out.append(_string(_b(value), escape))
    else:
        out.append(format_value(value))


# --- the lazy per-message bundle -----------------------------------------------------------


class MessageContent:
    """Lazily derived views of one message's raw bytes (LF or CRLF as stored).

    Everything is computed at most once; cheap things (the header) never force the expensive
    ones (the CRLF copy of a big body, the MIME tree).
    """

    __slots__ = ("raw", "_wire", "_header", "_fields", "_tree", "_env", "_bs", "_body")

    def __init__(self, raw: bytes):
        self.raw = raw
        self._wire = None
        self._header = None
        self._fields = None
        self._tree = None
        self._env = None
        self._bs = None
        self._body = None

    def raw_bytes(self) -> bytes:
        return self.raw

    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = to_wire(self.raw)
        return self._wire

    def header(self) -> bytes:
        if self._header is None:
            if self._wire is not None:
                w = self._wire
                self._header = w[: _find_header_end(w, 0, len(w))]
            else:
                self._header = header_block(self.raw)
        return self._header

    def fields(self) -> list[tuple[bytes, bytes]]:
        if self._fields is None:
            self._fields = parse_fields(self.header())
        return self._fields

    def tree(self) -> MimePart:
        if self._tree is None:
            self._tree = parse_message(self.wire())
        return self._tree

    def envelope_bytes(self) -> bytes:
        if self._env is None:
            self._env = envelope_bytes(self.fields())
        return self._env

    def bodystructure_bytes(self, extensible: bool = True) -> bytes:
        if extensible:
            if self._bs is None:
                self._bs = format_structure(bodystructure(self.wire(), self.tree(), True))
            return self._bs
        if self._body is None:
            self._body = format_structure(bodystructure(self.wire(), self.tree(), False))
        return self._body
