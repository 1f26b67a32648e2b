"""FETCH items: parse the request (RFC 3501 §6.4.5, RFC 9051 §6.4.5) and build responses.

Usage from the FETCH command module:

    req = parse_fetch_items(args[1:], uid_command=cmd.name == "UID FETCH")  # ImapBad on error
    req.needs_content   # False: answer from the index alone (FLAGS, UID, RFC822.SIZE, ...)
    req.needs_file      # True: some item needs the message file, not just the parsed cache
    req.sets_seen       # a non-PEEK body item: set \\Seen first, then report FLAGS
    req.wants_modseq    # MODSEQ asked for, or CHANGEDSINCE given (RFC 7162)
    req.changedsince, req.vanished   # FETCH modifiers (RFC 7162 §3.1.4, §3.2.6)

    lines = fetch_response(req, seq, msg, flags, content_loader, include_flags=..., modseq=...)
    transport.writeSequence(lines)

`msg` is a store Message (uid, size, wire_size, internaldate, modseq); `flags` the flags to
report (store flags plus the session's \\Recent); `content_loader(msg)` returns a content
object (`mailsuite.imap.mime.MessageContent` or `mailsuite.store.parsed_cache.CachedContent`)
and is only called when `req.needs_content`.  BINARY of a part with an unknown
Content-Transfer-Encoding raises `ImapNo("UNKNOWN-CTE", ...)` (RFC 3516 §4.2); the command
should give up on the whole FETCH then, as the RFC expects a tagged NO.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mailsuite.imap import mime
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.response import flag_list

__all__ = [
    "FetchItem",
    "FetchRequest",
    "Section",
    "parse_fetch_items",
    "fetch_response",
    "format_internaldate",
]


@dataclass(frozen=True)
class Section:
    """A section spec: part numbers plus HEADER / HEADER.FIELDS[.NOT] / TEXT / MIME / ""."""

    part: tuple[int, ...] = ()
    text: str = ""
    part_text: str = ""  # the part numbers as the client wrote them (echoed verbatim)
    fields: tuple[str, ...] = ()  # header names as echoed: upper-cased, quoted if they were
    names: tuple[str, ...] = ()  # the header names themselves

    @property
    def field_set(self) -> frozenset[bytes]:
        return frozenset(f.lower().encode("utf-8", "replace") for f in self.names)

    def spec(self) -> str:
        """The section as echoed in the response (RFC 3501 §7.4.2 `BODY[<section>]`)."""
        out = self.part_text or ".".join(str(n) for n in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
        if self.text.startswith("HEADER.FIELDS"):
            out += " (" + " ".join(self.fields) + ")"
        return out


@dataclass(frozen=True)
class FetchItem:
    kind: str  # FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE UID MODSEQ
    # RFC822 RFC822.HEADER RFC822.TEXT BODY[] BINARY[] BINARY.SIZE
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False
    field_set: frozenset[bytes] = frozenset()
    label: bytes = b""  # the response's item name, e.g. b"BODY[HEADER]<0>" (precomputed)


@dataclass
class FetchRequest:
    items: list[FetchItem] = field(default_factory=list)
    needs_content: bool = False
    needs_file: bool = False
    sets_seen: bool = False
    wants_modseq: bool = False
    changedsince: int | None = None
    vanished: bool = False

    def kinds(self) -> set[str]:
        return {i.kind for i in self.items}


_MACROS = {
    # RFC 3501 §6.4.5: macros, only valid alone (not inside a list)
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE = {
    "FLAGS",
    "INTERNALDATE",
    "RFC822.SIZE",
    "ENVELOPE",
    "BODY",
    "BODYSTRUCTURE",
    "UID",
    "MODSEQ",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
}
_CONTENT_KINDS = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT"}
_SECTION_ITEM_RE = re.compile(
    r"(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<(\d{1,20})(?:\.(\d{1,20}))?>)?\Z",
    re.IGNORECASE,
)
# Dovecot also takes part 0 (never exists) and leading zeros, so we do not refuse them.
_PART_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})*")


def parse_fetch_items(args, uid_command: bool = False) -> FetchRequest:
    """FETCH arguments after the sequence set: `items [modifiers]` (RFC 3501, RFC 7162).

    `args` is the token list after the set; a single Atom or list is accepted as well.
    For UID FETCH the UID item is added in front when missing (RFC 3501 §6.4.8).
    """
    if isinstance(args, (Atom, str)) and not isinstance(args, list):
        args = [args]
    if not isinstance(args, list) or not args or len(args) > 2:
        raise ImapBad("Invalid FETCH arguments")
    spec = args[0]
    req = FetchRequest()
    if isinstance(spec, Atom):
        up = spec.upper()
        names = [Atom(x) for x in _MACROS[up]] if up in _MACROS else [spec]
    elif isinstance(spec, list):
        if not spec:
            raise ImapBad("Empty FETCH item list")
        names = spec
    else:
        raise ImapBad("Invalid FETCH item")
    for name in names:
        if not isinstance(name, Atom):
            raise ImapBad("Invalid FETCH item")
        req.items.append(_parse_item(name))
    if len(args) == 2:
        _parse_modifiers(args[1], req)
    if uid_command and not any(i.kind == "UID" for i in req.items):
        req.items.insert(0, FetchItem("UID"))
    for it in req.items:
        if it.kind in _CONTENT_KINDS or it.section is not None:
            req.needs_content = True
            if not _cache_answerable(it):
                req.needs_file = True
        if it.kind == "MODSEQ":
            req.wants_modseq = True
        if not it.peek and it.kind in ("RFC822", "RFC822.TEXT", "BODY[]", "BINARY[]"):
            req.sets_seen = True
    return req


def _cache_answerable(it: FetchItem) -> bool:
    if it.kind in ("ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.HEADER"):
        return True
    return (
        it.kind == "BODY[]"
        and it.section is not None
        and not it.section.part
        and it.section.text.startswith("HEADER")
    )


def _parse_item(name: Atom) -> FetchItem:
    up = name.upper()
    if up in _SIMPLE:
        return FetchItem(up)
    if up == "BODYSTRUCTURE.PEEK":
        return FetchItem("BODYSTRUCTURE")  # Dovecot's reading of a common client slip
    m = _SECTION_ITEM_RE.match(name)
    if not m:
        raise ImapBad(f"Invalid FETCH item {name[:60]}")
    head = m.group(1).upper()
    partial = None
    if m.group(3) is not None:
        # RFC 3501 §9: "<" number "." nz-number ">".  Like Dovecot we also take a zero
        # length (an empty string) and a bare "<origin>" (to the end).
        origin = int(m.group(3))
        length = int(m.group(4)) if m.group(4) is not None else None
        partial = (origin, length)
    if head.startswith("BINARY"):
        # BINARY takes part numbers only (RFC 3516 §6); Dovecot still serves MIME, HEADER
        # and TEXT there as BODY would, and so do we.
        sec = _parse_section(m.group(2))
        if head == "BINARY.SIZE":
            if partial is not None:
                raise ImapBad("BINARY.SIZE takes no partial")
            return FetchItem("BINARY.SIZE", sec, label=_label(b"BINARY.SIZE", sec, None))
        return FetchItem(
            "BINARY[]", sec, partial, head == "BINARY.PEEK", label=_label(b"BINARY", sec, partial)
        )
    section = _parse_section(m.group(2))
    return FetchItem(
        "BODY[]",
        section,
        partial,
        peek=head == "BODY.PEEK",
        field_set=section.field_set,
        label=_label(b"BODY", section, partial),
    )


def _label(head: bytes, section: Section, partial) -> bytes:
    # RFC 3501 §7.4.2: BODY[<section>]<<origin octet>>; .PEEK is never echoed
    out = head + b"[" + section.spec().encode("utf-8") + b"]"
    if partial is not None:
        out += b"<%d>" % partial[0]
    return out


def _parse_section(text: str) -> Section:
    """RFC 3501 §9 section-spec (inside the brackets)."""
    if not text:
        return Section()
    m = _PART_RE.match(text)
    part: tuple[int, ...] = ()
    part_text = ""
    rest = text
    if m:
        part_text = m.group(0)
        part = tuple(int(x) for x in part_text.split("."))
        rest = text[m.end() :]
        if not rest:
            return Section(part, part_text=part_text)
        if not rest.startswith("."):
            raise ImapBad("Invalid section")
        rest = rest[1:]
    word, sp, tail = rest.partition(" ")
    word = word.upper()
    if word in ("HEADER", "TEXT") and not sp:
        return Section(part, word, part_text=part_text)
    if word == "MIME" and not sp:
        if not part:
            raise ImapBad("MIME needs a part number")  # RFC 3501 §9 section-text
        return Section(part, word, part_text=part_text)
    if word in ("HEADER.FIELDS", "HEADER.FIELDS.NOT") and sp:
        listed = _header_list(tail)
        # echoed upper-cased, a quoted name still quoted (as Dovecot answers)
        shown = tuple(f'"{n.upper()}"' if quoted else n.upper() for n, quoted in listed)
        names = tuple(n for n, _ in listed)
        return Section(part, word, part_text=part_text, fields=shown, names=names)
    raise ImapBad("Invalid section")


_HLIST_TOKEN_RE = re.compile(r'\s*(?:"((?:[^"\\]|\\.)*)"|([^\s()"]+))')


def _header_list(text: str) -> list[tuple[str, bool]]:
    """`(FROM "TO" X-Y)` -> names; header-list = "(" header-fld-name *(SP ...) ")"."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise ImapBad("Invalid header list")
    inner = text[1:-1]
    names = []
    pos = 0
    while pos < len(inner):
        m = _HLIST_TOKEN_RE.match(inner, pos)
        if not m or m.end() == pos:
            if inner[pos:].strip() == "":
                break
            raise ImapBad("Invalid header list")
        name = m.group(1) if m.group(1) is not None else m.group(2)
        if m.group(1) is not None:
            name = re.sub(r"\\(.)", r"\1", name)
        if not name or any(c in "\r\n\x00" for c in name):
            raise ImapBad("Invalid header field name")
        names.append((name, m.group(1) is not None))
        pos = m.end()
    if not names:
        raise ImapBad("Empty header list")
    return names


def _parse_modifiers(mods, req: FetchRequest) -> None:
    # RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED (only with UID FETCH; the command checks)
    if not isinstance(mods, list) or not mods:
        raise ImapBad("Invalid FETCH modifiers")
    i = 0
    while i < len(mods):
        m = mods[i]
        if not isinstance(m, Atom):
            raise ImapBad("Invalid FETCH modifier")
        up = m.upper()
        if up == "CHANGEDSINCE" and i + 1 < len(mods):
            v = mods[i + 1]
            if not isinstance(v, Atom) or not v.isdigit() or len(v) > 20:
                raise ImapBad("Invalid CHANGEDSINCE value")
            req.changedsince = int(v)
            req.wants_modseq = True
            i += 2
        elif up == "VANISHED":
            req.vanished = True
            i += 1
        else:
            raise ImapBad(f"Unknown FETCH modifier {m[:40]}")
    if req.vanished and req.changedsince is None:
        raise ImapBad("VANISHED needs CHANGEDSINCE")  # RFC 7162 §3.2.6


# --- response building --------------------------------------------------------------------

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_internaldate(ts: float) -> str:
    """RFC 3501 §9 date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"` in the local zone; the day is
    zero-padded (2DIGIT), as Dovecot sends it."""
    t = time.localtime(ts)
    off = t.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off) // 60
    return (
        f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}"
    )


def _literal(data: bytes, out: list[bytes]) -> None:
    if b"\x00" in data:
        # RFC 3501 §4.3: a literal cannot carry NUL; 0x80 stands in, as in Dovecot
        data = data.replace(b"\x00", b"\x80")
    out.append(b"{%d}\r\n" % len(data))
    out.append(data)


def fetch_response(
    req: FetchRequest,
    seq: int,
    msg,
    flags,
    content_loader: Callable | None = None,
    *,
    include_flags: bool = False,
    modseq: bool = False,
) -> list[bytes]:
    """One `* seq FETCH (...)` response as byte chunks (literals inline), CRLF-terminated.

    `include_flags` adds FLAGS when the request lacks it (after a \\Seen change, RFC 3501
    §6.4.5); `modseq` adds MODSEQ (CONDSTORE enabled and FLAGS reported, RFC 7162 §3.2.4).
    """
    out: list[bytes] = [b"* %d FETCH (" % seq]
    content = None
    first = True
    has_flags = has_modseq = False
    for it in req.items:
        if not first:
            out.append(b" ")
        first = False
        kind = it.kind
        if kind == "UID":
            out.append(b"UID %d" % msg.uid)
        elif kind == "FLAGS":
            out.append(b"FLAGS " + flag_list(flags))
            has_flags = True
        elif kind == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % _wire_size(msg))
        elif kind == "INTERNALDATE":
            out.append(b'INTERNALDATE "%s"' % format_internaldate(msg.internaldate).encode())
        elif kind == "MODSEQ":
            out.append(b"MODSEQ (%d)" % msg.modseq)  # RFC 7162 §3.3.2
            has_modseq = True
        else:
            if content is None:
                if content_loader is None:
                    raise ValueError("content_loader needed for " + kind)
                content = content_loader(msg)
            _content_item(it, content, out)
    if (include_flags or modseq) and not has_flags:
        out.append(b" FLAGS " + flag_list(flags))
    if modseq and not has_modseq:
        out.append(b" MODSEQ (%d)" % msg.modseq)
    out.append(b")\r\n")
    return out


def _wire_size(msg) -> int:
    ws = getattr(msg, "wire_size", None)
    return ws if ws is not None else msg.size


def _content_item(it: FetchItem, content, out: list[bytes]) -> None:
    kind = it.kind
    if kind == "ENVELOPE":
        out.append(b"ENVELOPE " + content.envelope_bytes())
    elif kind == "BODYSTRUCTURE":
        out.append(b"BODYSTRUCTURE " + content.bodystructure_bytes(True))
    elif kind == "BODY":
        out.append(b"BODY " + content.bodystructure_bytes(False))
    elif kind == "RFC822":
        out.append(b"RFC822 ")
        _literal(content.wire(), out)
    elif kind == "RFC822.HEADER":
        out.append(b"RFC822.HEADER ")
        _literal(content.header(), out)
    elif kind == "RFC822.TEXT":
        out.append(b"RFC822.TEXT ")
        w = content.wire()
        _literal(w[len(content.header()) :], out)
    elif kind == "BODY[]":
        data = _section_data(it.section, it.field_set, content)
        _partial_out(it.label, data, it.partial, out, binary=False)
    elif kind == "BINARY[]":
        data, decoded = _binary_data(it.section, content)
        _partial_out(it.label, data, it.partial, out, binary=decoded)
    elif kind == "BINARY.SIZE":
        data, _ = _binary_data(it.section, content)
        out.append(it.label + b" %d" % len(data))


def _partial_out(name: bytes, data, partial, out: list[bytes], binary: bool) -> None:
    if partial is not None:
        origin, length = partial
        if data is not None:
            data = data[origin:] if length is None else data[origin : origin + length]
    out.append(name + b" ")
    if data is None:
        out.append(b"NIL")
    elif binary or b"\x00" in data and name.startswith(b"BINARY"):
        # RFC 3516 §4.2: literal8 for decoded content (it may hold any octet, NUL included)
        out.append(b"~{%d}\r\n" % len(data))
        out.append(data)
    else:
        _literal(data, out)


def _section_data(sec: Section, field_set: frozenset[bytes], content) -> bytes | None:
    text = sec.text
    if not sec.part:
        if text == "HEADER":
            return content.header()
        if text == "HEADER.FIELDS":
            return mime.filter_fields(content.header(), field_set, False)
        if text == "HEADER.FIELDS.NOT":
            return mime.filter_fields(content.header(), field_set, True)
        w = content.wire()
        if text == "TEXT":
            return w[len(content.header()) :]
        return w
    w = content.wire()
    part = mime.find_part(content.tree(), sec.part)
    if part is None:
        return b""  # a part that does not exist reads as empty, as in Dovecot
    if text == "":
        return w[part.body_start : part.end]
    if text == "MIME":
        return w[part.start : part.body_start]
    # HEADER / TEXT / HEADER.FIELDS of a part refer to its encapsulated message
    # (RFC 3501 §6.4.5); other parts have none.
    inner = part.message
    if inner is None:
        return b""
    header = w[inner.start : inner.body_start]
    if text == "HEADER":
        return header
    if text == "TEXT":
        return w[inner.body_start : inner.end]
    return mime.filter_fields(header, field_set, text == "HEADER.FIELDS.NOT")


def _binary_data(sec: Section, content) -> tuple[bytes, bool]:
    """RFC 3516 §4: the section with transfer encodings removed; (data, decoded)."""
    if sec.text:
        return _section_data(sec, sec.field_set, content), False
    w = content.wire()
    tree = content.tree()
    if not sec.part:
        part, with_header = tree, True
    else:
        part, with_header = mime.find_part(tree, sec.part), False
        if part is None:
            return b"", False
    try:
        return mime.binary_entity(w, part, with_header)
    except mime.UnknownTransferEncoding:
        raise ImapNo("UNKNOWN-CTE", "Unknown Content-Transfer-Encoding") from None
