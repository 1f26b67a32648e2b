"""IMAP4 response formatting: values to wire bytes (RFC 3501 §4, §7), no I/O.

Every byte the server sends is built here or from these pieces: quoted strings or literals
chosen by content, NIL, flag lists, mailbox names in modified UTF-7 (RFC 3501 §5.1.3, or raw
UTF-8 after ENABLE UTF8=ACCEPT, RFC 6855 §3), tagged and untagged status lines.
"""

from __future__ import annotations

from collections.abc import Iterable

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec)

from mailsuite.imap.parser import Atom, ImapBad

CRLF = b"\r\n"


def quoted_or_literal(value: bytes | str, utf8: bool = False) -> bytes:
    """A string as `"quoted"` when it can be, else as a `{n}` literal (RFC 3501 §4.3)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if len(value) < 1024 and _quotable(value, utf8):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(value) + value


def _quotable(value: bytes, utf8: bool) -> bool:
    if b"\r" in value or b"\n" in value or b"\x00" in value:
        return False
    if not utf8 and not value.isascii():
        return False
    return True


def nstring(value: bytes | str | None, utf8: bool = False) -> bytes:
    """NIL for None, else a string (RFC 3501 §9 nstring)."""
    if value is None:
        return b"NIL"
    return quoted_or_literal(value, utf8)


def astring(value: bytes | str, utf8: bool = False) -> bytes:
    """An atom when the text is a plain atom, else quoted/literal (RFC 3501 §9 astring)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if value and _is_atom(value) and value.upper() != b"NIL":
        return value
    return quoted_or_literal(value, utf8)


_ATOM_SPECIALS = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}


def _is_atom(value: bytes) -> bool:
    return value.isascii() and not any(c in _ATOM_SPECIALS for c in value)


def format_value(value, utf8: bool = False) -> bytes:
    """Serialize a nested structure: None→NIL, int→number, Atom→raw, bytes/str→string,
    list/tuple→parenthesized list.  Used for ENVELOPE, BODYSTRUCTURE, status items."""
    if value is None:
        return b"NIL"
    if isinstance(value, Atom):
        return value.encode("utf-8")
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return quoted_or_literal(bytes(value) if not isinstance(value, str) else value, utf8)
    if isinstance(value, (list, tuple)):
        return b"(" + b" ".join(format_value(v, utf8) for v in value) + b")"
    raise TypeError(f"cannot format {type(value).__name__} as IMAP")


_FLAG_LISTS: dict[frozenset, bytes] = {}


def flag_list(flags: Iterable[str]) -> bytes:
    """`(\\Seen \\Answered $Forwarded)` with a stable order: system flags first.

    A mailbox has few distinct flag combinations, so the rendering of each frozenset is
    remembered (FETCH FLAGS of 100,000 messages formats a handful of lists)."""
    key = flags if isinstance(flags, frozenset) else frozenset(flags)
    out = _FLAG_LISTS.get(key)
    if out is None:
        out = b"(" + b" ".join(f.encode("utf-8") for f in sort_flags(key)) + b")"
        if len(_FLAG_LISTS) > 4096:
            _FLAG_LISTS.clear()
        _FLAG_LISTS[key] = out
    return out


def sort_flags(flags: Iterable[str]) -> list[str]:
    """System flags in RFC order, then keywords alphabetically (stable output for tests)."""
    return sorted(flags, key=_flag_key)


_SYSTEM_ORDER = {
    "\\Seen": "0",
    "\\Answered": "1",
    "\\Flagged": "2",
    "\\Deleted": "3",
    "\\Draft": "4",
    "\\Recent": "5",
}


def _flag_key(name: str) -> str:
    return _SYSTEM_ORDER.get(name, ("6" if name.startswith("\\") else "9") + name)


# --- mailbox names --------------------------------------------------------------------------


def encode_mailbox(name: str, utf8: bool = False) -> bytes:
    """A mailbox name on the wire: modified UTF-7 (RFC 3501 §5.1.3) unless UTF8=ACCEPT is on."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = name.encode("utf-8") if utf8 else name.encode("imap4-utf-7")
    return astring(raw, utf8)


def decode_mailbox(value: bytes | str, utf8: bool = False) -> str:
    """A client's mailbox argument as a Unicode name; INBOX in any case is INBOX (§5.1).

    Raises ImapBad for malformed modified UTF-7 or invalid UTF-8.
    """
    if isinstance(value, str):
        value = value.encode("utf-8")
    try:
        if utf8:
            # RFC 6855 §3: after ENABLE UTF8=ACCEPT names are UTF-8, "&" is just "&".
            name = value.decode("utf-8")
        else:
            # RFC 3501 §5.1.3: "&" starts a base64 run; a name without "&" is plain ASCII
            # (8-bit octets are taken as UTF-8, as Dovecot does, to be lenient).
            if b"&" in value:
                name = value.decode("imap4-utf-7")
            else:
                name = value.decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        raise ImapBad("Invalid mailbox name encoding") from None
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX/"):
        return "INBOX" + name[5:]
    return name


# --- status lines ---------------------------------------------------------------------------


def status_line(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    """`tag OK [CODE] text` or `* NO text` (RFC 3501 §7.1)."""
    out = f"{tag} {status} "
    if code:
        out += f"[{code}] "
    return (out + text).encode("utf-8") + CRLF


def tagged(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    return status_line(tag, status, text, code)


def untagged(text: str | bytes) -> bytes:
    """`* text` + CRLF."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return b"* " + text + CRLF


def continuation(text: str = "Ready") -> bytes:
    return b"+ " + text.encode("utf-8") + CRLF


# What a command handler returns when it wrote its own tagged reply (STARTTLS, COMPRESS: the
# stream changes right after that reply, so the session must not add one).
ALREADY_ANSWERED = object()
