"""FETCH items: parse the request (RFC 3501 §6.4.5, RFC 9051 §6.4.5).

    req = parse_fetch_items(args[1:], uid_command=cmd.name == "UID FETCH")  # ImapBad on error
    req.needs_content   # False: answer from the index alone (FLAGS, UID, RFC822.SIZE, ...)
    req.needs_file      # True: some item needs the message file, not just the parsed cache
    req.sets_seen       # a non-PEEK body item: set \\Seen first, then report FLAGS
    req.wants_modseq    # MODSEQ asked for, or CHANGEDSINCE given (RFC 7162)
    req.changedsince, req.vanished   # FETCH modifiers (RFC 7162 §3.1.4, §3.2.6)

`mailsuite.imap.fetch` renders the responses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.sections import Section

__all__ = ["FetchItem", "FetchRequest", "parse_fetch_items"]


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
    # The compiled form (`mailsuite.imap.fetch.FetchRenderer`), made at the first response.
    renderer: object | None = field(default=None, repr=False, compare=False)

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
    "SAVEDATE",  # RFC 8514
    "PREVIEW",  # RFC 8970
    "EMAILID",  # RFC 8474
    "THREADID",
}
_CONTENT_KINDS = {
    "ENVELOPE",
    "BODY",
    "BODYSTRUCTURE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
    "PREVIEW",
    "EMAILID",
}
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
        if isinstance(name, list) and req.items and req.items[-1].kind == "PREVIEW":
            # RFC 8970 §3.2: PREVIEW (LAZY); a preview is always made at once, so LAZY
            # changes nothing here.
            if not name or any(not isinstance(m, Atom) or m.upper() != "LAZY" for m in name):
                raise ImapBad("Invalid PREVIEW modifier")
            continue
        if not isinstance(name, Atom):
            raise ImapBad("Invalid FETCH item")
        req.items.append(_parse_item(name))
    # An item asked for twice is answered once: "FLAGS FLAGS ..." in a 64 KB command line would
    # otherwise make each message's response thousands of times longer than the request.
    req.items = list(dict.fromkeys(req.items))
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
        sec = parse_section(m.group(2))
        if head == "BINARY.SIZE":
            if partial is not None:
                raise ImapBad("BINARY.SIZE takes no partial")
            return FetchItem("BINARY.SIZE", sec, label=_label(b"BINARY.SIZE", sec, None))
        return FetchItem(
            "BINARY[]", sec, partial, head == "BINARY.PEEK", label=_label(b"BINARY", sec, partial)
        )
    section = parse_section(m.group(2))
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


def parse_section(text: str) -> Section:
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
