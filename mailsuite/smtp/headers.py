"""Header work on an accepted message, pure: find the header block, read From:, add fields.

Submission (RFC 6409 §8) lets the server complete a message: a missing Date: or Message-ID:
is added here, and the From: addresses are read so the server can check they belong to the
authenticated account.  Messages are CRLF-terminated bytes as produced by `BodyReader`.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time

from mailsuite.smtp.received import date_of

_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
# A From: value that is one plain address, or a name of letters, digits and blanks before one
# <address>: what nearly every client sends.  email.utils.getaddresses, pure Python and a good
# part of a submission's header work, gives the same address for these (checked against it
# over random strings in the tests); anything else goes to it.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ADDR = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_FROM = re.compile(rf"[ \t]*(?:({_ADDR})|[A-Za-z0-9 \t]*<({_ADDR})>)[ \t]*\Z")


def header_block_end(data: bytes) -> int:
    """Offset just after the last header line (before the empty line or the first body line).

    RFC 5322 §2.2: a header field is a name, a colon and a body, continued by lines starting
    with white space.  The first line that is neither ends the header block.
    """
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        if line[:1] in (b" ", b"\t") and pos > 0:
            pos = end
            continue
        if not _FIELD.match(line):
            break
        pos = end
    return pos


def header_index(data: bytes) -> dict[str, list[str]]:
    """Unfolded values (RFC 5322 §2.2.3) of every field in the header block, by lower-case
    name: one pass serves all of a submission's checks."""
    block = data[: header_block_end(data)].decode("utf-8", "replace")
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", block)
    out: dict[str, list[str]] = {}
    for line in unfolded.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            out.setdefault(key.strip().lower(), []).append(value.strip())
    return out


def header_fields(data: bytes, name: str) -> list[str]:
    """Unfolded values of every `name:` field in the header block."""
    return header_index(data).get(name.lower(), [])


def from_addresses(data: bytes, fields: dict[str, list[str]] | None = None) -> list[str] | None:
    """Addresses in From: (RFC 5322 §3.6.2 mailbox-list); None when there is no From: field.
    `fields` is the message's header_index() when the caller has it."""
    values = (header_index(data) if fields is None else fields).get("from")
    if not values:
        return None
    if len(values) == 1 and (simple := _SIMPLE_FROM.match(values[0])):
        return [simple[1] or simple[2]]
    pairs = email.utils.getaddresses(values)
    return [addr for _, addr in pairs]


def add_missing_headers(
    data: bytes,
    hostname: str,
    now: float | None = None,
    fields: dict[str, list[str]] | None = None,
) -> bytes:
    """RFC 6409 §8.2/8.3: add Date: and Message-ID: when the client left them out."""
    if fields is None:
        fields = header_index(data)
    extra = []
    if not fields.get("date"):
        stamp = int(time.time() if now is None else now)
        extra.append(f"Date: {date_of(stamp)}\r\n".encode())
    if not fields.get("message-id"):
        extra.append(f"Message-ID: <{new_message_id(hostname)}>\r\n".encode())
    if not extra:
        return data
    end = header_block_end(data)
    head = data[:end]
    if head and not head.endswith(b"\n"):
        head += b"\r\n"  # a header block with no line end at all: close its last line
    return head + b"".join(extra) + data[end:]


def new_message_id(hostname: str) -> str:
    return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.{secrets.token_hex(8)}@{hostname}"
