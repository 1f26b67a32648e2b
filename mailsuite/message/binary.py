"""Binary content made safe for a line-oriented store.

A message APPENDed as a literal8 (RFC 3516 §4.3) may carry parts whose bytes are not text:
NULs, a CR without LF, an LF without CR.  The store keeps messages as lines, so such a body
would come back altered.  Each such leaf is re-encoded as base64 (its Content-Transfer-Encoding
changed to say so), which RFC 3516 allows a server to do; FETCH BINARY[n] decodes it and
returns the client's bytes exactly.
"""

from __future__ import annotations

import base64
import re

from mailsuite.message.structure import iter_leaves, parse_message

__all__ = ["data_domain", "needs_armour", "armour_binary_parts"]

_NOT_TEXT = re.compile(rb"\x00|\r(?!\n)|(?<!\r)\n")
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\r\n(?:[ \t].*\r\n)*")
# Encodings whose bodies are stored as they are (RFC 2045 §6.2 identity encodings).
_IDENTITY = ("", "7bit", "8bit", "binary")
_LINE = 76  # RFC 2045 §6.8: encoded lines of at most 76 characters
# RFC 2045 §2.8: 7bit and 8bit data come in lines of at most 998 octets before the CRLF.
# Tried where a line starts only: tried at every byte, each attempt read on to the line end,
# 500 steps a byte for lines just under the limit.
_LONG_LINE = re.compile(rb"(?<![^\r\n])[^\r\n]{999}")


def needs_armour(data: bytes) -> bool:
    """True when `data` holds bytes a line-oriented store would not keep as they are."""
    return _NOT_TEXT.search(data) is not None


def data_domain(data: bytes) -> str:
    """RFC 2045 §2.7-2.9: "7bit", "8bit" or "binary", the narrowest domain `data` is in as it
    stands; what a Content-Transfer-Encoding may say of it once its encoding is undone."""
    if needs_armour(data) or _LONG_LINE.search(data):
        return "binary"
    return "7bit" if data.isascii() else "8bit"


def armour_binary_parts(raw: bytes) -> bytes:
    """`raw` with every identity-encoded leaf whose body `needs_armour` re-encoded as base64;
    `raw` itself when there is none (or its structure cannot be told from its CRLF lines)."""
    if not needs_armour(raw):
        return raw
    edits: list[tuple[int, int, bytes]] = []
    for leaf in iter_leaves(parse_message(raw)):
        if leaf.is_message or leaf.transfer_encoding not in _IDENTITY:
            continue
        body = raw[leaf.body_start : leaf.end]
        if not needs_armour(body):
            continue
        header = raw[leaf.start : leaf.body_start]
        if not header.endswith(b"\r\n"):
            continue  # no header/body separator: nothing safe to rewrite
        kept = _CTE_FIELD.sub(b"", header[:-2])
        encoded = base64.b64encode(body)
        lines = [encoded[i : i + _LINE] for i in range(0, len(encoded), _LINE)]
        new = kept + b"Content-Transfer-Encoding: base64\r\n\r\n" + b"\r\n".join(lines)
        edits.append((leaf.start, leaf.end, new))
    if not edits:
        return raw
    out = []
    pos = 0
    for start, end, new in edits:
        out.append(raw[pos:start])
        out.append(new)
        pos = end
    out.append(raw[pos:])
    return b"".join(out)
