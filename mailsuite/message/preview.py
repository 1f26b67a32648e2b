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

# An element whose content is not text, up to its end tag; an opening tag with no end tag
# after it is left to _TAG.  Found by _drop_hidden, never by `.*?` from each opening tag: with
# no end tag after them, every "<script" read the rest of the text again.
_HIDDEN_OPEN = re.compile(r"(?i)<(script|style|head)\b")
_HIDDEN_CLOSE = {
    name: re.compile(r"(?i)</" + name + r"\s*+>") for name in ("script", "style", "head")
}
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
        text = html.unescape(_drop_tags(_drop_hidden(text)))
    return _SPACE.sub(" ", text).strip()[:PREVIEW_MAX]


def _drop_hidden(text: str) -> str:
    """Each script, style and head element (its opening tag up to the first end tag of its
    kind, in any case) as one space."""
    out: list[str] = []
    pos = 0
    opening = _HIDDEN_OPEN
    unclosed: set[str] = set()  # kinds with no end tag left in the text
    while (m := opening.search(text, pos)) is not None:
        name = m.group(1).lower()
        close = _HIDDEN_CLOSE[name].search(text, m.end())
        if close is None:
            # No end tag of this kind after here: its later opening tags cannot close either,
            # so the search stops looking for them.
            unclosed.add(name)
            kinds = [k for k in _HIDDEN_CLOSE if k not in unclosed]
            if not kinds:
                break
            opening = re.compile(r"(?i)<(" + "|".join(kinds) + r")\b")
            out.append(text[pos : m.start() + 1])
            pos = m.start() + 1
            continue
        out.append(text[pos : m.start()])
        out.append(" ")
        pos = close.end()
    out.append(text[pos:])
    return "".join(out)


def _drop_tags(text: str) -> str:
    """Each tag as one space.  A "<" after the last ">" opens no tag: the text after that
    ">" is kept as it is rather than searched from each of its "<" to its end."""
    end = text.rfind(">") + 1
    return _TAG.sub(" ", text[:end]) + text[end:]


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
