"""What a FETCH section names (RFC 3501 §6.4.5) and its BINARY form (RFC 3516 §4), cut out
of a message's CRLF bytes with the offsets of its `mailsuite.message` tree.

    section_data(section, field_set, content) -> bytes     # BODY[<section>]
    binary_data(section, content) -> (bytes, decoded)      # BINARY[<section>]

`content` is a message content object (`header()`, `wire()`, `tree()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailsuite.imap.parser import ImapNo
from mailsuite.message.binary import data_domain
from mailsuite.message.decode import UnknownTransferEncoding, decode_transfer
from mailsuite.message.headers import filter_fields
from mailsuite.message.structure import MimePart, find_part

__all__ = ["Section", "section_data", "binary_data", "binary_entity"]


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


def section_data(sec: Section, field_set: frozenset[bytes], content) -> bytes | None:
    text = sec.text
    if not sec.part:
        if text == "HEADER":
            return content.header()
        if text == "HEADER.FIELDS":
            return filter_fields(content.header(), field_set, False)
        if text == "HEADER.FIELDS.NOT":
            return filter_fields(content.header(), field_set, True)
        w = content.wire()
        if text == "TEXT":
            return w[len(content.header()) :]
        return w
    w = content.wire()
    part = find_part(content.tree(), sec.part)
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
    return filter_fields(header, field_set, text == "HEADER.FIELDS.NOT")


def binary_data(sec: Section, content) -> tuple[bytes, bool]:
    """RFC 3516 §4: the section with transfer encodings removed; (data, decoded)."""
    if sec.text:
        return section_data(sec, sec.field_set, content), False
    w = content.wire()
    tree = content.tree()
    if not sec.part:
        part, with_header = tree, True
    else:
        part, with_header = find_part(tree, sec.part), False
        if part is None:
            return b"", False
    try:
        return binary_entity(w, part, with_header)
    except UnknownTransferEncoding:
        raise ImapNo("UNKNOWN-CTE", "Unknown Content-Transfer-Encoding") from None


_CTE_FIELD_RE = re.compile(
    rb"^(content-transfer-encoding[ \t]*:)[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*",
    re.IGNORECASE | re.MULTILINE,
)


def _binary_header(header: bytes, encoding: bytes = b"binary") -> bytes:
    """The header with its Content-Transfer-Encoding replaced by `encoding`, placed last (as
    Dovecot writes it)."""
    header = _CTE_FIELD_RE.sub(b"", header)
    cte = b"Content-Transfer-Encoding: " + encoding + b"\r\n"
    if header.endswith(b"\r\n\r\n") or header == b"\r\n":
        return header[:-2] + cte + b"\r\n"
    return header + cte


def binary_entity(
    wire: bytes, part: MimePart, with_header: bool, domain: bool = False
) -> tuple[bytes, bool]:
    """RFC 3516 §4: a section with every leaf's Content-Transfer-Encoding undone.

    Returns (data, decoded_anything).  Decoded leaves get `Content-Transfer-Encoding: binary`
    in their header, so that a whole message or multipart stays self-describing (Dovecot
    does the same); with `domain`, the narrowest of 7bit, 8bit and binary that describes the
    decoded bytes (RFC 5524's BODYPARTSTRUCTURE of BINARY data is read from it).  Raises
    UnknownTransferEncoding for an encoding we cannot undo.
    """
    header = wire[part.start : part.body_start]
    if part.is_multipart:
        chunks = []
        changed = False
        pos = part.body_start
        for c in part.children:
            chunks.append(wire[pos : c.start])
            data, ch = binary_entity(wire, c, True, domain)
            chunks.append(data)
            changed |= ch
            pos = max(pos, c.end)
        chunks.append(wire[pos : part.end])
        body = b"".join(chunks)
    elif part.is_message:
        body, changed = binary_entity(wire, part.message, True, domain)
    else:
        raw = wire[part.body_start : part.end]
        enc = part.transfer_encoding
        if enc in ("7bit", "8bit", "binary"):
            body, changed = raw, False
        else:
            body, changed = decode_transfer(raw, enc, strict=True), True
            header = _binary_header(header, data_domain(body).encode() if domain else b"binary")
    return (header + body if with_header else body), changed
