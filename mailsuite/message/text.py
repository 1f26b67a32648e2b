"""The searchable text of a leaf part: its transfer encoding and charset undone."""

from __future__ import annotations

from mailsuite.message.decode import decode_charset, decode_transfer
from mailsuite.message.structure import MimePart

__all__ = ["part_text"]


def part_text(wire: bytes, part: MimePart) -> str:
    """The decoded text of a leaf part (for SEARCH BODY/TEXT, RFC 3501 §6.4.4).

    The transfer encoding is undone even in a message without MIME-Version (Dovecot's
    search does so too, although its BODYSTRUCTURE ignores it)."""
    body = wire[part.body_start : part.end]
    data = decode_transfer(body, part.transfer_encoding)
    return decode_charset(data, part.param("charset"))
