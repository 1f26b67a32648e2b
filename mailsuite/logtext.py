"""Client text made safe for a log line.

A log file is read by people and by parsers (fail2ban bans addresses from it): a user name,
HELO name, address, mailbox name or command word that a client sent must never start a line of
its own, hide the rest of one, or be taken for our own words.  Every log call that includes a
value a client (or a remote server) chose passes it through `visible` first; this module is the
one place that decides how such text is written.
"""

from __future__ import annotations

# Longer values are cut: a log line is for reading, and a client must not fill the disk.
LIMIT = 200

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if ch.isprintable():
        return ch
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # a byte that was not UTF-8 (surrogateescape)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: object, limit: int = LIMIT) -> str:
    """`value` as one line of printable text: backslashes, control characters (CR, LF, ESC,
    NUL…), line and paragraph separators and other non-printable characters (bidirectional
    overrides included) become backslash escapes, so the original can be told apart from our
    own words; at most `limit` characters of the value are kept, then "...".

    Bytes are read as UTF-8; bytes that are not UTF-8 are shown as \\xNN."""
    if value is None:
        return "-"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bounded(bytes(value).decode("utf-8", "surrogateescape"), limit)
    return _bounded(value if isinstance(value, str) else str(value), limit)


def _bounded(text: str, limit: int) -> str:
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    if text.isprintable() and "\\" not in text:
        out = text  # the common case: nothing to escape
    else:
        out = "".join(_escape(ch) for ch in text)
    return out + "..." if cut else out


def token(value: object, limit: int = LIMIT) -> str:
    """`visible(value)` with spaces escaped too (\\x20): for a value that must stay one word in
    a line that parsers split on spaces, such as the user name in a failed-login line."""
    return visible(value, limit).replace(" ", "\\x20")
