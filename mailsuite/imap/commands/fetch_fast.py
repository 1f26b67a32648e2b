"""The FETCH shapes clients page through a whole mailbox with, rendered without the general
item loop: index items (UID FLAGS RFC822.SIZE INTERNALDATE MODSEQ) and top-level
BODY.PEEK[HEADER.FIELDS (...)] (Thunderbird, K-9, mbsync's X-TUID lookup).

Why a second renderer: on a 10,000-message FETCH the per-item dispatch of
`mailsuite.imap.fetch.fetch_response` costs more than the data.  Here the request is compiled
once into a list of small functions, and the header-field extract of each message is kept in
a bounded memo (a message file never changes under its key), as Dovecot keeps requested
header fields in its cache file.  The output is byte-identical to `fetch_response`;
tests/imap/test_fetch.py checks that on the same requests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from mailsuite.imap import mime
from mailsuite.imap.fetch import format_internaldate
from mailsuite.imap.response import flag_list

MEMO_ENTRIES = 30_000
_memo: OrderedDict = OrderedDict()


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def header_fields(msg, header_of: Callable, field_set: frozenset, exclude: bool) -> bytes:
    """HEADER.FIELDS[.NOT] of a message, remembered by (key, size, fields)."""
    key = (msg.key, msg.size, field_set, exclude)
    data = _memo.get(key)
    if data is None:
        data = mime.filter_fields(header_of(msg), field_set, exclude)
        _memo[key] = data
        if len(_memo) > MEMO_ENTRIES:
            _memo.popitem(last=False)
    return data


def compile_request(req, header_of: Callable) -> Callable | None:
    """A `render(seq, msg, flags, include_flags, modseq) -> bytes` for `req`, or None when the
    request has items this renderer does not handle (the general path takes it then).

    `header_of(msg)` returns the message's header block in wire form (from the cache)."""
    parts: list[Callable] = []
    memo_keys: list[tuple] = []  # (field_set, exclude) of the header items
    has_flags = has_modseq = False
    for it in req.items:
        kind = it.kind
        if kind == "UID":
            parts.append(lambda m, fl: b"UID %d" % m.uid)
        elif kind == "FLAGS":
            parts.append(lambda m, fl: b"FLAGS " + flag_list(fl))
            has_flags = True
        elif kind == "RFC822.SIZE":
            parts.append(lambda m, fl: b"RFC822.SIZE %d" % m.wire_size)
        elif kind == "INTERNALDATE":
            parts.append(
                lambda m, fl: b'INTERNALDATE "%s"' % format_internaldate(m.internaldate).encode()
            )
        elif kind == "MODSEQ":
            parts.append(lambda m, fl: b"MODSEQ (%d)" % m.modseq)
            has_modseq = True
        elif (
            kind == "BODY[]"
            and it.partial is None
            and it.section is not None
            and not it.section.part
            and it.section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")
        ):
            parts.append(_header_part(it, header_of))
            memo_keys.append((it.field_set, it.section.text == "HEADER.FIELDS.NOT"))
        else:
            return None

    def render(seq: int, m, flags, include_flags: bool, modseq: bool) -> bytes:
        body = b" ".join([p(m, flags) for p in parts])
        if (include_flags or modseq) and not has_flags:
            body += b" FLAGS " + flag_list(flags)
        if modseq and not has_modseq:
            body += b" MODSEQ (%d)" % m.modseq
        return b"* %d FETCH (%s)\r\n" % (seq, body)

    def unknown(m) -> bool:
        """True when rendering `m` would need its header (not remembered yet)."""
        return any((m.key, m.size, fs, ex) not in _memo for fs, ex in memo_keys)

    render.unknown = unknown
    return render


def _header_part(it, header_of: Callable) -> Callable:
    label = it.label + b" "
    field_set = it.field_set
    exclude = it.section.text == "HEADER.FIELDS.NOT"

    def part(m, fl) -> bytes:
        return label + _literal(header_fields(m, header_of, field_set, exclude))

    return part
