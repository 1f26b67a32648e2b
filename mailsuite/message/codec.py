"""A parsed MIME tree and a parsed envelope as compact bytes and back, for caches that keep
parse results.

Why: a message file never changes under its name, so its tree and envelope can be parsed once
and kept; this is the one place that knows how they are laid out.  `FORMAT_VERSION` changes
whenever `MimePart`, `Envelope` or this layout does, so a cache holding older bytes drops them.

A tree read back keeps, of each part's header fields, only those that describe the part
(`Content-*`) and, for an encapsulated message, its envelope fields: what BODYSTRUCTURE-like
descriptions need.  The offsets refer to the message's CRLF form.
"""

from __future__ import annotations

import marshal

from mailsuite.message.envelope import ENVELOPE_FIELDS, Envelope
from mailsuite.message.structure import MimePart

__all__ = [
    "FORMAT_VERSION",
    "dump_tree",
    "load_tree",
    "CorruptTree",
    "dump_envelope",
    "load_envelope",
    "CorruptEnvelope",
]

FORMAT_VERSION = 2


class CorruptTree(ValueError):
    """Bytes that are not a tree written by this version of `dump_tree`."""


class CorruptEnvelope(ValueError):
    """Bytes that are not an envelope written by this version of `dump_envelope`."""


def dump_tree(root: MimePart) -> bytes:
    return marshal.dumps(_pack(root))


def load_tree(data: bytes) -> MimePart:
    try:
        return _unpack(marshal.loads(data))
    except (EOFError, ValueError, TypeError, IndexError) as e:
        raise CorruptTree(str(e)) from None


def _pack(part: MimePart, message_root: bool = False) -> tuple:
    keep = (
        [(n, raw) for n, raw in part.fields if n.startswith(b"content-") or n in ENVELOPE_FIELDS]
        if message_root
        else [(n, raw) for n, raw in part.fields if n.startswith(b"content-")]
    )
    # MimePart's fields in the order of its constructor's parameters: read back positionally.
    return (
        part.start,
        part.body_start,
        part.end,
        keep,
        part.ctype,
        part.csubtype,
        part.type_raw,
        part.subtype_raw,
        part.params,
        part.has_content_type,
        [_pack(c) for c in part.children],
        None if part.message is None else _pack(part.message, message_root=True),
        part.closed_at_end,
        part.lines,
        part.mime_headers,
    )


def _unpack(t: tuple) -> MimePart:
    (
        start,
        body_start,
        end,
        fields,
        ctype,
        csub,
        traw,
        sraw,
        params,
        has_content_type,
        kids,
        msg,
        closed_at_end,
        lines,
        mime_headers,
    ) = t
    # Positional arguments: the keyword form takes twice as long, and this runs per part of
    # every message a client describes.
    return MimePart(
        start,
        body_start,
        end,
        fields,
        ctype,
        csub,
        traw,
        sraw,
        params,
        has_content_type,
        [_unpack(c) for c in kids],
        None if msg is None else _unpack(msg),
        closed_at_end,
        lines,
        mime_headers,
    )


# An envelope is kept as the plain tuple of its fields, in `Envelope`'s order; addresses stay
# the lists `parse_addresses` returns ([name, adl, mailbox, host] each).
_ENVELOPE_LEN = len(Envelope._fields)


def dump_envelope(env: Envelope) -> bytes:
    return marshal.dumps(tuple(env))


def load_envelope(data: bytes) -> Envelope:
    try:
        t = marshal.loads(data)
    except (EOFError, ValueError, TypeError) as e:
        raise CorruptEnvelope(str(e)) from None
    if type(t) is not tuple or len(t) != _ENVELOPE_LEN:
        raise CorruptEnvelope("not an envelope")
    return Envelope._make(t)
