"""Line ends and the header/body split of raw message bytes (LF as stored or CRLF as sent)."""

from __future__ import annotations

__all__ = ["to_wire", "header_end", "header_block"]


def to_wire(raw: bytes) -> bytes:
    """Bytes with CRLF line ends (RFC 3501 §2.2 / RFC 5322: what a client receives)."""
    # `b"\r" in` is one memchr, cheaper than looking for the pair in a message stored with LF.
    if b"\r" in raw and b"\r\n" in raw:
        if type(raw) is bytes and raw.count(b"\n") == raw.count(b"\r\n"):
            return raw  # already CRLF throughout (as SMTP hands it over): two scans, no copy
        raw = raw.replace(b"\r\n", b"\n")
    return raw.replace(b"\n", b"\r\n")


# The first stretch of a message searched for its header's blank line; then eight times more,
# and so on: a header is a few KB, and a search of the whole message for the blank-line form it
# does not use (LF in a CRLF message, as SMTP hands it over) would be a pass over its body.
HEADER_WINDOW = 8192


def header_end(raw: bytes) -> int:
    """Offset just past the header's blank line in raw (LF or CRLF) data; len(raw) if none."""
    if raw.startswith(b"\n"):
        return 1
    if raw.startswith(b"\r\n"):
        return 2
    window = HEADER_WINDOW
    while True:
        # A blank line found within the window comes before any that crosses its end.
        stop = min(window, len(raw))
        i = raw.find(b"\n\n", 0, stop)
        # a CRLF blank line can only come first if it starts before the LF one
        j = raw.find(b"\n\r\n", 0, stop if i < 0 else i + 2)
        if j >= 0 and (i < 0 or j < i):
            return j + 3
        if i >= 0:
            return i + 2
        if stop == len(raw):
            return len(raw)
        window *= 8


def header_block(raw: bytes) -> bytes:
    """The top-level header of raw message bytes in wire form, including the blank line."""
    return to_wire(raw[: header_end(raw)])
