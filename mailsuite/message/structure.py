"""The MIME tree of a message (RFC 2045, RFC 2046) with exact byte offsets into its CRLF form.

Why our own parser instead of `email.message_from_bytes`: protocols need byte-exact sizes,
line counts and section boundaries *as sent* (CRLF line ends), and parsing must never fail
on the broken MIME real mail is full of.  The parser works on the CRLF form and records
offsets; nothing is decoded until a caller asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsuite.message.headers import field_value, first_value, parse_fields
from mailsuite.message.params import content_type, is_token, param_value, strip_comments

__all__ = [
    "MimePart",
    "parse_message",
    "find_part",
    "iter_leaves",
    "header_end_in",
    "encoding_field",
    "MAX_DEPTH",
    "MAX_PARTS",
]

# Parts nested deeper than this are treated as opaque leaves (Dovecot caps depth too); a
# message built to make us recurse forever gets a shallow tree instead of a crash.
MAX_DEPTH = 40
MAX_PARTS = 5000


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
    # Body lines of a text or message/rfc822 part (BODYSTRUCTURE reports them, RFC 3501
    # §7.4.2); counted at parse time so that a stored tree needs no body to describe it.
    lines: int = 0
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
        return param_value(self.params, name)

    @property
    def encoding_raw(self) -> str | None:
        """The Content-Transfer-Encoding as written (encoding_field)."""
        return encoding_field(self.fields) if self.mime_headers else None

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


def encoding_field(fields: list[tuple[bytes, bytes]]) -> str | None:
    """The Content-Transfer-Encoding as written: the first field whose value is one token (an
    invalid one is skipped, as Dovecot does)."""
    for name, raw in fields:
        if name == b"content-transfer-encoding":
            v = strip_comments(field_value(raw).decode("utf-8", "surrogateescape")).strip()
            if v and is_token(v):
                return v
    return None


def header_end_in(data: bytes, start: int, end: int) -> int:
    """Offset just past the blank line ending the header that starts at `start` in CRLF
    data; `end` when there is none."""
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
    body_start = header_end_in(data, start, end)
    fields = parse_fields(data[start:body_start])
    part = MimePart(start, body_start, end, fields)
    ct = first_value(fields, b"content-type")
    if message_root and ct is None and first_value(fields, b"mime-version") is None:
        part.mime_headers = False
    if ct is not None:
        t, s, params = content_type(ct)
        if t is not None:
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
        elif part.ctype == "text":
            part.lines = data.count(b"\n", body_start, end)
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
        part.lines = data.count(b"\n", body_start, end)
    elif part.ctype == "text":
        part.lines = data.count(b"\n", body_start, end)
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
