"""IMAP folder names <-> Maildir++ directory names, and the checks that keep names inside.

IMAP uses `/` as hierarchy separator; Maildir++ keeps every folder as a `.`-prefixed directory in
the Maildir root with `.` between levels.  A `.` (or `%`) inside one level is escaped as `%2E`
(`%25`) so any name round-trips.  Names are UTF-8 on disk; the IMAP layer decodes modified UTF-7
before calling the store.
"""

from __future__ import annotations

SEPARATOR = "/"
INBOX = "INBOX"
MAX_NAME_BYTES = 200
MAX_DEPTH = 16
NAME_MAX = 255  # bytes in one directory entry (ext4, xfs, btrfs)

_ESCAPES = {".": "%2E", "%": "%25"}


class BadFolderName(ValueError):
    """A name that could escape the Maildir or that the file system cannot hold."""


def normalize(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 §5.1), also as the first level of a path."""
    head, sep, rest = name.partition(SEPARATOR)
    if head.upper() == INBOX:
        return INBOX + sep + rest
    return name


def validate(name: str) -> str:
    """Return the normalized name or raise BadFolderName."""
    if not name:
        raise BadFolderName("empty mailbox name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise BadFolderName("mailbox name too long")
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            raise BadFolderName("control character in mailbox name")
    parts = name.split(SEPARATOR)
    if len(parts) > MAX_DEPTH:
        raise BadFolderName("mailbox hierarchy too deep")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadFolderName("empty, '.' or '..' level in mailbox name")
        if part.startswith("~"):
            raise BadFolderName("mailbox level may not start with '~'")
    return normalize(name)


def _escape(part: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in part)


def _unescape(part: str) -> str:
    out = []
    i = 0
    while i < len(part):
        ch = part[i]
        if ch == "%" and i + 3 <= len(part):
            code = part[i + 1 : i + 3]
            try:
                out.append(chr(int(code, 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(ch)
        i += 1
    return "".join(out)


def to_dirname(name: str) -> str:
    """Directory name (relative to the Maildir root) for a validated IMAP name; '' for INBOX."""
    name = validate(name)
    if name == INBOX:
        return ""
    dirname = "." + ".".join(_escape(p) for p in name.split(SEPARATOR))
    # Escaping triples each "." and "%": a name within MAX_NAME_BYTES can still overflow.
    if len(dirname.encode("utf-8")) > NAME_MAX:
        raise BadFolderName("mailbox name too long")
    return dirname


def from_dirname(dirname: str) -> str | None:
    """IMAP name of a `.Folder` directory, or None when it is not a folder directory."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    parts = dirname[1:].split(".")
    if any(not p for p in parts):
        return None
    name = SEPARATOR.join(_unescape(p) for p in parts)
    try:
        return validate(name)
    except BadFolderName:
        return None
