"""A short plain-text preview of a message, for a client's message list (IMAP PREVIEW).

The first body part a reader would see decides: the first text/plain leaf that is not an
attachment, else the first such text/html one reduced to its text.  Quoted replies and
signatures are kept as they are: the aim is what the message starts with, not a summary.
"""

from __future__ import annotations

import html
import re

from mailsuite.message.structure import MimePart, iter_leaves
from mailsuite.message.text import part_text

__all__ = ["preview_text", "PREVIEW_MAX"]

# RFC 8970 §3.3: at most 256 characters (not octets); 200 is what a list line shows.
PREVIEW_MAX = 200
# Only so much of a body is looked at: a preview never costs a whole large part.
_SCAN = 16 * 1024

_HIDDEN = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_TAG = re.compile(r"(?s)<[^>]*>")
_SPACE = re.compile(r"\s+")


def preview_text(wire: bytes, root: MimePart) -> str:
    """Up to PREVIEW_MAX characters of the message's first readable text, whitespace folded;
    "" when it has none."""
    plain = html_part = None
    for leaf in iter_leaves(root):
        if leaf.is_message or _is_attachment(leaf):
            continue
        if leaf.ctype == "text" and leaf.csubtype == "plain" and plain is None:
            plain = leaf
        elif leaf.ctype == "text" and leaf.csubtype == "html" and html_part is None:
            html_part = leaf
    part = plain or html_part
    if part is None:
        return ""
    end = min(part.end, part.body_start + _SCAN)
    text = part_text(wire, _clipped(part, end))
    if part is html_part and part is not plain:
        text = html.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", text)))
    return _SPACE.sub(" ", text).strip()[:PREVIEW_MAX]


def _is_attachment(part: MimePart) -> bool:
    disposition = part.get(b"content-disposition")
    return disposition is not None and disposition.strip().lower().startswith(b"attachment")


def _clipped(part: MimePart, end: int) -> MimePart:
    if end == part.end:
        return part
    clipped = MimePart(part.start, part.body_start, end, part.fields)
    clipped.params = part.params
    clipped.mime_headers = part.mime_headers
    return clipped
