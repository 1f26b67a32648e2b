"""The envelope fields of a message header as parsed values: Date, Subject, the address
fields, In-Reply-To and Message-ID (RFC 5322 §3.6), read the way Dovecot reads them."""

from __future__ import annotations

import re
from typing import NamedTuple

from mailsuite.message.addresses import parse_addresses
from mailsuite.message.headers import unfold

__all__ = ["Envelope", "envelope", "ENVELOPE_FIELDS"]

_ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")
_STRING_FIELDS = (b"date", b"subject", b"in-reply-to", b"message-id")
ENVELOPE_FIELDS = frozenset(_ADDRESS_FIELDS + _STRING_FIELDS)
_WSP_RUN_RE = re.compile(rb"[ \t]+")


class Envelope(NamedTuple):
    """Values unfolded and otherwise raw (encoded words untouched).  Address fields are lists
    as `parse_addresses` returns them, None when absent or empty; `sender` and `reply_to` are
    what the header says (no defaulting).  `subject_folded` is True when the Subject was
    folded or held a TAB (IMAP sends such a subject as a literal).

    A named tuple: immutable, and rebuilt from a cache's kept tuple in one step
    (`Envelope._make`), which a frozen dataclass takes several times longer to do."""

    date: bytes | None = None
    subject: bytes | None = None
    subject_folded: bool = False
    from_: list | None = None
    sender: list | None = None
    reply_to: list | None = None
    to: list | None = None
    cc: list | None = None
    bcc: list | None = None
    in_reply_to: bytes | None = None
    message_id: bytes | None = None


def envelope(fields: list[tuple[bytes, bytes]]) -> Envelope:
    """The envelope of parsed header fields, Dovecot's way: the last occurrence of a string
    field wins, addresses of repeated address fields add up, values are unfolded with leading
    whitespace dropped, and the subject's whitespace runs become single spaces."""
    strings: dict[bytes, bytes] = {}
    addrs: dict[bytes, list] = {}
    folded = False
    for name, raw in fields:
        if name not in ENVELOPE_FIELDS:
            continue
        v = unfold(raw[raw.index(b":") + 1 :])
        if v.endswith(b"\n"):
            v = v[:-2] if v.endswith(b"\r\n") else v[:-1]
        v = v.lstrip(b" \t")
        if name in _STRING_FIELDS:
            if name == b"subject":
                folded = b"\t" in v or b"\n" in raw[:-1].rstrip(b"\r")
                v = _WSP_RUN_RE.sub(b" ", v).strip(b" ")
            strings[name] = v
        else:
            found = parse_addresses(v)
            if found:
                addrs.setdefault(name, []).extend(found)
    get = strings.get
    return Envelope(
        date=get(b"date"),
        subject=get(b"subject"),
        subject_folded=folded,
        from_=addrs.get(b"from"),
        sender=addrs.get(b"sender"),
        reply_to=addrs.get(b"reply-to"),
        to=addrs.get(b"to"),
        cc=addrs.get(b"cc"),
        bcc=addrs.get(b"bcc"),
        in_reply_to=get(b"in-reply-to"),
        message_id=get(b"message-id"),
    )
