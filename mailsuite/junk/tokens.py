"""The words a message is judged by: decoded header values, the text of its text parts (HTML
reduced to text), the domains its links point to, and a few shape features.

Pure: bytes in, a set of strings out, never raises.  Each header's words carry the header's
name ("subject:cheap"), so a word in a Subject and the same word in the body count apart.
The filter's own headers (X-Spam-*) and the trace fields every message of this server carries
(Received, Return-Path, Delivered-To, Authentication-Results) are left out: learning them would
teach the filter its own verdicts or this server's name.
"""

from __future__ import annotations

import binascii
import html
import re

from mailsuite.message.decode import decode_charset, decode_header_value, decode_transfer
from mailsuite.message.headers import field_value
from mailsuite.message.lines import header_end, to_wire
from mailsuite.message.params import content_type, param_value
from mailsuite.message.structure import MimePart, encoding_field, iter_leaves, parse_message

# Text read from a message, at most (about 300 words, twice the MAX_CLUES strongest the
# classifier combines): the words that decide sit near the top, and each further KB costs
# a delivery about 20 µs of CPU in a busy server (splitting and a set of its chunks) while
# adding few new words (a message's words are a set).
MAX_TEXT = 2 * 1024
# The bytes parsed: text parts after large attachments are still found.
MAX_RAW = 256 * 1024
# The header read, at most.
MAX_HEADER = 64 * 1024
MAX_PARTS = 50
# Encoded bytes first decoded per character of text wanted: enough for base64 (four per
# three, and the line ends) and for quoted-printable or UTF-8 text that is mostly ASCII; a
# part whose start gives fewer characters is decoded whole.
_BYTES_PER_CHAR = 1.5
# Charsets decoded as UTF-8 (else Latin-1), as decode_charset does.
_UTF8_LIKE = frozenset({"", "us-ascii", "ascii", "utf-8", "utf8"})
# Words shorter than this say little; longer ones are mostly encoded junk.
MIN_WORD, MAX_WORD = 3, 24

_HEADERS = {
    b"subject": "subject",
    b"from": "from",
    b"reply-to": "reply-to",
    b"to": "to",
    b"cc": "to",
    b"x-mailer": "mailer",
    b"user-agent": "mailer",
    b"list-id": "list",
    b"list-unsubscribe": "list",
    b"precedence": "precedence",
    b"content-type": "ctype",
}
# The fields of a header that judging a message reads: the words' (_HEADERS), the MIME ones
# that tell how to read the body, Authentication-Results (the filter's DMARC signal); each
# found by the line end before it, without its own.
_READ_FIELD = re.compile(
    rb"(?i)\n((?:subject|from|reply-to|to|cc|x-mailer|user-agent|list-id|list-unsubscribe"
    rb"|precedence|content-type|content-transfer-encoding|mime-version|authentication-results)"
    rb"[ \t]*:[^\n]*(?:\n[ \t][^\n]*)*)"
)
_PUNCTUATION = "\"'`()[]{}<>.,;:!?*|~^=+#&/\\-_«»“”‘’„…·•"
# The same set's ASCII characters, all that can be stripped from ASCII text: str.strip with
# only these skips the look-up of each end character among the wider ones.
_ASCII_PUNCTUATION = "".join(c for c in _PUNCTUATION if c.isascii())
# A run of local-part characters is taken whole, with its "@domain" when one follows (group
# 1, else empty): `[\w.+-]+@...` tried again from inside a run that has none, where it fails
# the same way, and a long run cost its square.
_ADDRESS = re.compile(r"[\w.+-]++(?:@([\w-]+(?:\.[\w-]+)+))?")
# Links: "://" and the host after it, in lower-cased text, where the scheme before it is one of
# _SCHEMES.  A pattern that starts with a literal is searched for fast; one that starts with
# "(?:https?|ftp)" is tried at every character of the text.
_LINK = re.compile(r"://(?=([^\s/?#\"'<>]+))")
_SCHEMES = ("http", "https", "ftp")
_TAG = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>")
_SPACE = re.compile(r"\s+")


def message_head(raw: bytes) -> tuple[int, MimePart]:
    """(where the body starts, the message's header as a part with no body: the fields the
    filter reads, and how to read the body): what message_tokens starts from."""
    # A message as SMTP hands it over ends its header with a CRLF blank line: header_end looks
    # only before it (not through the first 8 KB for an LF one the message lacks).
    crlf = raw.find(b"\r\n\r\n", 0, MAX_HEADER)
    end = header_end(raw[: crlf + 4] if crlf >= 0 else raw[:MAX_HEADER])
    # Only the fields read are found (one search from line start to line start), and a
    # message of one part (most) is read without the MIME parser's tree.
    fields = [
        (f[: f.index(b":")].rstrip(b" \t").lower(), f + b"\n")
        for f in _READ_FIELD.findall(b"\n" + raw[:end])
    ]
    leaf = _Leaf(fields)
    if leaf.ctype in ("multipart", "message"):
        return end, parse_message(to_wire(raw[:end]))
    return end, leaf


class _Leaf:
    """A message header that is not multipart nor message/*, as message_tokens reads it:
    its fields (those _READ_FIELD finds), and its type, parameters and transfer encoding as
    message.structure.MimePart tells them."""

    __slots__ = ("fields", "ctype", "csubtype", "params")
    is_multipart = is_message = False

    def __init__(self, fields: list[tuple[bytes, bytes]]):
        self.fields = fields
        self.ctype, self.csubtype = "text", "plain"
        self.params: list[tuple[str, str]] = []
        for name, raw in fields:
            if name == b"content-type":
                t, sub, self.params = content_type(field_value(raw))
                if t is not None:
                    self.ctype, self.csubtype = t.lower(), sub.lower()
                break

    def param(self, name: str) -> str | None:
        return param_value(self.params, name)

    @property
    def transfer_encoding(self) -> str:
        """The first Content-Transfer-Encoding that is one token, else 7bit (with or
        without MIME-Version)."""
        return (encoding_field(self.fields) or "7bit").lower()


def message_tokens(raw: bytes, head: tuple[int, MimePart] | None = None) -> set[str]:
    """The distinct tokens of a message (LF or CRLF line ends); `head`: its message_head
    when already made."""
    try:
        end, root = head or message_head(raw)
        wire = None
        if root.is_multipart or root.is_message:
            wire = to_wire(raw[:MAX_RAW] if len(raw) > MAX_RAW else raw)
            root = parse_message(wire)
    except Exception:  # the message package does not raise; this guards the filter anyway
        return {"shape:unparsable"}
    tokens: set[str] = set()
    _header_tokens(root.fields, tokens)
    if wire is None:
        # One part, the message's own body: neither the whole message brought to CRLF nor
        # parsed, only the start of its body.
        _part_tokens(raw[end:MAX_RAW], root, MAX_TEXT, tokens)
        return tokens
    budget = MAX_TEXT
    for n, part in enumerate(iter_leaves(root)):
        if n >= MAX_PARTS or budget <= 0:
            break
        budget -= _part_tokens(wire[part.body_start : part.end], part, budget, tokens)
    return tokens


def _part_tokens(body: bytes, part: MimePart, budget: int, tokens: set[str]) -> int:
    """The tokens of one leaf part (its body as stored or sent) into `tokens`; the characters
    of text read (at most `budget`)."""
    if part.ctype != "text":
        tokens.add(f"part:{part.ctype}/{part.csubtype}")
        name = part.param("name") or ""
        if "." in name:
            tokens.add("filename:" + name.rpartition(".")[2].lower()[:8])
        return 0
    text = _leading_text(body, part, budget)
    if part.csubtype == "html":
        tokens.add("part:text/html")
        text_tokens(html_text(text, tokens), tokens)
    else:
        text_tokens(text, tokens)
    return len(text)


def _leading_text(body: bytes, part: MimePart, budget: int) -> str:
    """The first `budget` characters of a text part's decoded text.  Where a line feed can
    only be a line end (UTF-8 and ASCII) only the start of a long body is decoded, up to its
    last whole line: undoing base64 or quoted-printable and decoding the charset are line by
    line, so that start reads as the whole does (a body whose UTF-8 is broken past it is read
    as UTF-8 there, where the whole would be Latin-1)."""
    limit = int(budget * _BYTES_PER_CHAR)
    if len(body) > limit and _line_feed_is_line_end(part.param("charset")):
        data = _undo_transfer(to_wire(body[: body.rfind(b"\n", 0, limit) + 1]), part)
        cut = data.rfind(b"\n") + 1
        text = decode_charset(data[:cut], "utf-8")
        if len(text) >= budget:
            return text[:budget]
    data = decode_transfer(to_wire(body), part.transfer_encoding)
    return decode_charset(data, part.param("charset"))[:budget]


def _undo_transfer(lines: bytes, part: MimePart) -> bytes:
    """decode_transfer of whole lines in wire form, by binascii alone where that gives the
    same: well-formed base64 (dropping the line ends by a regular expression first costs
    twice the decoding), quoted-printable with no line ending in white space (RFC 2045 §6.7
    rule 3's case, which needs the white space dropped first)."""
    encoding = part.transfer_encoding
    try:
        if encoding == "base64":
            return binascii.a2b_base64(lines)
        if (
            encoding == "quoted-printable"
            and b" \r\n" not in lines
            and b"\t\r\n" not in lines
            and not lines.endswith((b" ", b"\t"))
        ):
            return binascii.a2b_qp(lines)
    except (binascii.Error, ValueError):
        pass  # broken base64: its tolerant reading
    return decode_transfer(lines, encoding)


def _line_feed_is_line_end(charset: str | None) -> bool:
    return (charset or "").strip().strip('"').lower() in _UTF8_LIKE


def _header_tokens(fields: list[tuple[bytes, bytes]], tokens: set[str]) -> None:
    for name, raw in fields:
        prefix = _HEADERS.get(name)
        if prefix is None:
            continue
        value = decode_header_value(raw.partition(b":")[2])[:2000]
        if prefix == "ctype":
            tokens.add("ctype:" + value.split(";", 1)[0].strip().lower()[:40])
            continue
        lowered = value.lower()
        label = prefix + ":"
        if "@" in value:
            tokens.update(label + "@" + d.lower() for d in _ADDRESS.findall(value) if d)
        tokens.update(map(label.__add__, _words(lowered)))
        if prefix == "subject" and value.isupper() and len(value) > 8:
            tokens.add("subject:shape:upper")


def html_text(markup: str, tokens: set[str]) -> str:
    """HTML reduced to its visible text; the domains of its links go into `tokens`."""
    if "://" in markup:
        for host in set(_link_hosts(markup.lower())):
            _url_tokens(host, tokens)
    text = _TAG.sub(" ", markup)
    return html.unescape(text)


def text_tokens(text: str, tokens: set[str]) -> None:
    """Words and link domains of a text, added to `tokens`."""
    text = text.lower()
    if "://" in text:
        for host in set(_link_hosts(text)):
            _url_tokens(host, tokens)
    tokens.update(_words(text))


def _link_hosts(text: str) -> list[str]:
    """The hosts of the http, https and ftp links in lower-cased text, left to right; a
    "://" within the host of the link before is not another link."""
    hosts: list[str] = []
    end = 0
    for m in _LINK.finditer(text):
        start = m.start()
        if start >= end and text.endswith(_SCHEMES, 0, start):
            hosts.append(m[1])
            end = start + 3 + len(m[1])
    return hosts


def _url_tokens(host: str, tokens: set[str]) -> None:
    host = host.rpartition("@")[2].partition(":")[0].strip(".").lower()[:253]
    if not host:
        return
    tokens.add("url:" + host)
    labels = host.split(".")
    for i in range(1, len(labels) - 1):
        tokens.add("url:" + ".".join(labels[i:]))


def url_domains(raw: bytes, limit: int = 20) -> list[str]:
    """The distinct host names links in the message point to, in order (domain lists)."""
    found: list[str] = []
    for token in sorted(t for t in message_tokens(raw) if t.startswith("url:")):
        host = token[4:]
        if not _is_ip(host) and host not in found:
            found.append(host)
    return found[:limit]


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def _words(text: str) -> set[str]:
    """The distinct words of a text, lower case: split at white space (as SpamBayes does;
    a regular expression over the whole text costs several times more), punctuation around
    a word dropped.  A long run of characters stands as "skip:<first letter><length in
    tens>" ("something long was here", not what it was).  One comprehension over the
    distinct chunks: this runs for every text part of every judged message."""
    punctuation = _ASCII_PUNCTUATION if text.isascii() else _PUNCTUATION
    return {
        w if len(w) <= MAX_WORD else f"skip:{w[0]}{len(w) // 10 * 10}"
        for chunk in set(text.split())
        if len(w := chunk.strip(punctuation)) >= MIN_WORD
    }
