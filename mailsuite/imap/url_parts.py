"""What an IMAP URL's ;SECTION= names in a stored message (RFC 5092 §6), in each form URLFETCH
can return it: the bytes as stored (RFC 4467 §7, RFC 5524's BODY), the bytes with their
Content-Transfer-Encoding undone (RFC 5524's BINARY) and the part's BODYPARTSTRUCTURE.

Pure: the message's bytes in, bytes out.  The resolver (`mailsuite.urlauth`) calls these in
the durable-I/O pool, so decoding a large attachment never runs on the reactor.

    section_bytes(raw, section) -> bytes | None        # the unextended URLFETCH, BURL
    url_part(raw, section, partial, ...) -> UrlPart    # the extended URLFETCH
"""

from __future__ import annotations

from dataclasses import dataclass

from mailsuite.imap.fetch_items import parse_section
from mailsuite.imap.parser import ImapBad
from mailsuite.imap.sections import Section, binary_entity, section_data
from mailsuite.imap.structure_wire import bodystructure_bytes
from mailsuite.message.content import MessageContent
from mailsuite.message.decode import UnknownTransferEncoding
from mailsuite.message.structure import MimePart, find_part, parse_message


def url_text(value) -> str:
    """A URL argument (an astring) as text; ImapBad for anything else."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return str(value)
    raise ImapBad("Expected a URL string")


__all__ = ["NoSuchSection", "UrlPart", "section_bytes", "url_part"]

# Sections whose data is a header block: no Content-Transfer-Encoding applies to them.
_HEADER_TEXTS = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME")


class NoSuchSection(LookupError):
    """The URL's ;SECTION= is malformed or names nothing in this message: the URL is invalid
    (RFC 4467 §8: URLFETCH answers NIL for it)."""


@dataclass(frozen=True)
class UrlPart:
    """The forms of one URL's data that were asked for (None: not asked for)."""

    body: bytes | None = None  # as stored (;PARTIAL= applied)
    # decoded (;PARTIAL= applied to the decoded bytes); None too when it cannot be decoded
    binary: bytes | None = None
    structure: bytes | None = None  # BODYPARTSTRUCTURE: RFC 3501 `body`, wire form


def _section(section: str) -> Section:
    try:
        return parse_section(section.upper())
    except ImapBad:
        raise NoSuchSection(section) from None


def _entity(sec: Section, tree: MimePart) -> tuple[MimePart, bool] | None:
    """The MIME entity whose data the section is, and whether its header is part of that
    data; None for a header section.  NoSuchSection when the part is not there."""
    part = tree
    if sec.part:
        part = find_part(tree, sec.part)
        if part is None:
            raise NoSuchSection("no such part")
    if sec.text == "MIME":
        return None
    if sec.part and sec.text:
        # HEADER, TEXT and HEADER.FIELDS of a part name its encapsulated message's (RFC 3501
        # §6.4.5); a part that is no message/rfc822 has none.
        part = part.message
        if part is None:
            raise NoSuchSection("the part is not a message")
    if sec.text in _HEADER_TEXTS:
        return None
    return part, not sec.part and not sec.text


def section_bytes(raw: bytes, section: str) -> bytes | None:
    """What BODY[<section>] of the stored message `raw` returns (a URL's ;SECTION=); None for
    a section that is malformed or names nothing (FETCH reads a missing part as empty, a URL
    naming one is invalid)."""
    content = MessageContent(raw)
    try:
        sec = _section(section)
        _entity(sec, content.tree())
    except NoSuchSection:
        return None
    return section_data(sec, sec.field_set, content)


def _cut(data: bytes, partial: tuple[int, int | None] | None) -> bytes:
    """RFC 5092 §6 / RFC 5550 §5: ;PARTIAL=offset[.length] of the data."""
    if partial is None:
        return data
    start, length = partial
    return data[start:] if length is None else data[start : start + length]


def url_part(
    raw: bytes,
    section: str,
    partial: tuple[int, int | None] | None,
    *,
    body: bool = False,
    binary: bool = False,
    structure: bool = False,
) -> UrlPart:
    """RFC 5524 §3.1: what `section` of the stored message `raw` is, in the forms asked for.
    NoSuchSection when the URL names nothing."""
    content = MessageContent(raw)
    sec = _section(section)
    wire = content.wire()
    entity = _entity(sec, content.tree())
    stored = section_data(sec, sec.field_set, content)
    decoded, changed = stored, False
    if binary and entity is not None:
        try:
            decoded, changed = binary_entity(wire, *entity)
        except UnknownTransferEncoding:
            decoded = None  # RFC 5524 §5 url-meta-binary: NIL on a decoding error
    shape = None
    if structure:
        shape = _structure(wire, entity, stored, converted=changed)
    return UrlPart(
        body=_cut(stored, partial) if body else None,
        binary=_cut(decoded, partial) if binary and decoded is not None else None,
        structure=shape,
    )


def _structure(
    wire: bytes, entity: tuple[MimePart, bool] | None, stored: bytes, converted: bool
) -> bytes:
    """BODYPARTSTRUCTURE (RFC 5524 §3.1, the `body` of RFC 3501 §9): the part as stored, or,
    when BINARY data was decoded, as returned (RFC 5524 §4: its encoding the decoded data's
    domain and its size the decoded size).  A header section is described as what it is, a
    text/rfc822-headers entity (RFC 6522 §4)."""
    if entity is None:
        part = parse_message(b"Content-Type: text/rfc822-headers\r\n\r\n" + stored)
        return bodystructure_bytes(part)
    part, _ = entity
    if converted:
        # The entity again with its header, each decoded leaf labelled with its domain.
        described, _ = binary_entity(wire, part, True, domain=True)
        part = parse_message(described)
    return bodystructure_bytes(part)
