"""A message's identity by content: the same bytes, wherever they are stored, give the same
identifier, and different bytes (for all practical purposes) a different one.

IMAP's EMAILID (RFC 8474 §5.1) must stay with a message through COPY and MOVE and never name
other content; a digest of the stored bytes does both without any state to keep.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["content_id"]


def content_id(raw: bytes) -> str:
    """ "M" and 26 base32 characters of the SHA-256 of `raw` (RFC 8474 objectid syntax:
    letters and digits, at most 255)."""
    digest = hashlib.sha256(raw).digest()[:16]
    return "M" + base64.b32encode(digest).decode("ascii").rstrip("=").lower()
