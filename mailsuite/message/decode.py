"""Encoded bytes to what they stand for: charsets, RFC 2047 encoded words in header values,
Content-Transfer-Encoding (RFC 2045 §6), and a leaf part's text."""

from __future__ import annotations

import base64
import binascii
import codecs
import re

from mailsuite.message.headers import unfold

__all__ = [
    "decode_charset",
    "decode_header_value",
    "decode_transfer",
    "UnknownTransferEncoding",
]

_CHARSET_ALIASES = {"unicode-1-1-utf-7": "utf-7", "x-unknown": "latin-1", "unknown-8bit": "latin-1"}


def decode_charset(data: bytes, charset: str | None) -> str:
    """Decode with a MIME charset, falling back to UTF-8 then Latin-1; never raises."""
    cs = (charset or "").strip().strip('"').lower()
    cs = _CHARSET_ALIASES.get(cs, cs)
    if cs and cs not in ("us-ascii", "ascii", "utf-8", "utf8"):
        try:
            codecs.lookup(cs)
            return data.decode(cs, "replace")
        except (LookupError, ValueError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# --- RFC 2047 encoded words -----------------------------------------------------------------

_EW_RE = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_EW_GAP_RE = re.compile(rb"(\?=)[ \t\r\n]+(?==\?[^?\s]+\?[BbQq]\?)")


def decode_header_value(raw: bytes) -> str:
    """Unfolded header value with RFC 2047 encoded-words decoded (whitespace between adjacent
    encoded words dropped, §6.2); 8-bit raw text is taken as UTF-8, else Latin-1."""
    raw = unfold(raw)
    if b"=?" not in raw:
        return decode_charset(raw, None)
    raw = _EW_GAP_RE.sub(rb"\1", raw)
    out: list[str] = []
    pos = 0
    for m in _EW_RE.finditer(raw):
        if m.start() > pos:
            out.append(decode_charset(raw[pos : m.start()], None))
        charset = m.group(1).decode("ascii", "replace").split("*", 1)[0]  # RFC 2231 §5 lang
        enc = m.group(2).upper()
        text = m.group(3)
        try:
            if enc == b"B":
                data = base64.b64decode(text + b"=" * (-len(text) % 4))
            else:
                data = binascii.a2b_qp(text.replace(b"_", b" "))
            out.append(decode_charset(data, charset))
        except (binascii.Error, ValueError):
            out.append(m.group(0).decode("ascii", "replace"))
        pos = m.end()
    out.append(decode_charset(raw[pos:], None))
    return "".join(out)


# --- transfer decoding ----------------------------------------------------------------------


class UnknownTransferEncoding(Exception):
    """RFC 3516 §4.2: BINARY of a part whose encoding we cannot undo -> NO [UNKNOWN-CTE]."""


_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
# Tried only where a run of blanks starts: from inside a run that is not at a line end the
# match would fail the same way again, a quadratic cost for a long run of blanks.
_QP_TRAILING_SPACE = re.compile(rb"(?<![ \t])[ \t]++(?=\r?\n|\Z)")


def decode_transfer(body: bytes, encoding: str, strict: bool = False) -> bytes:
    """Undo Content-Transfer-Encoding; tolerant of broken base64/QP unless strict."""
    enc = encoding.lower()
    if enc in ("7bit", "8bit", "binary", ""):
        return body
    if enc == "base64":
        clean = _B64_JUNK.sub(b"", body)
        clean = clean[: len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
        try:
            return base64.b64decode(clean + b"=" * (-len(clean) % 4))
        except (binascii.Error, ValueError):
            return b""
    if enc == "quoted-printable":
        try:
            # RFC 2045 §6.7 rule 3: trailing whitespace on an encoded line is deleted, so "="
            # followed only by whitespace is a soft line break (rule 5).
            if _trailing_space(body):
                body = _QP_TRAILING_SPACE.sub(b"", body)
            return binascii.a2b_qp(body)
        except (binascii.Error, ValueError):
            return body
    if strict:
        raise UnknownTransferEncoding(encoding)
    return body


def _trailing_space(body: bytes) -> bool:
    """Whether a line of `body` ends in a space or tab: a few memchr-like scans, where the
    regular expression's would try each space of the text."""
    return (
        b" \n" in body
        or b"\t\n" in body
        or b" \r\n" in body
        or b"\t\r\n" in body
        or body.endswith((b" ", b"\t"))
    )
