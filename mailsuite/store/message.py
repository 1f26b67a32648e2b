"""Line-end handling between disk (LF, as Maildir tools expect) and the wire (CRLF)."""

from __future__ import annotations


def to_lf(data: bytes) -> bytes:
    """Normalize CRLF to LF for storage."""
    return data.replace(b"\r\n", b"\n")


def to_crlf(data: bytes) -> bytes:
    """LF to CRLF for the wire, leaving existing CRLF pairs alone."""
    if b"\r" in data and b"\r\n" in data:  # one memchr first: most files hold no CR at all
        data = data.replace(b"\r\n", b"\n")
    return data.replace(b"\n", b"\r\n")


def wire_size(lf_data: bytes) -> int:
    """Size of LF-stored data once sent with CRLF line ends (RFC822.SIZE, POP3 octets)."""
    return len(lf_data) + lf_data.count(b"\n") - lf_data.count(b"\r\n")
