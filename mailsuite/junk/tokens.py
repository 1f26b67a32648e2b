"""The words a message is judged by: decoded header values, the text of its text parts (HTML
reduced to text), the domains its links point to, and a few shape features.

Pure: bytes in, a set of strings out, never raises.  Each header's words carry the header's
name ("subject:cheap"), so a word in a Subject and the same word in the body count apart.
The filter's own headers (X-Spam-*) and the trace fields every message of this server carries
(Received, Return-Path, Delivered-To, Authentication-Results) are left out: learning them would
teach the filter its own verdicts or this server's name.
"""

from __future__ import annotations

import html
import re

from mailsuite.message.decode import decode_header_value
from mailsuite.message.lines import to_wire
from mailsuite.message.structure import iter_leaves, parse_message
from mailsuite.message.text import part_text

# Text read from a message, at most (about 1300 words): the words that decide sit near the
# top, and past this each further KB cost the delivery thread about 20 µs of the GIL while
# adding few new words (a message's words are a set).
MAX_TEXT = 8 * 1024
# The bytes parsed: text parts after large attachments are still found.
MAX_RAW = 256 * 1024
MAX_PARTS = 50
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
_PUNCTUATION = "\"'`()[]{}<>.,;:!?*|~^=+#&/\\-_«»“”‘’„…·•"
_ADDRESS = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")
# Links: "://" and the host after it, in lower-cased text, where the scheme before it is one of
# _SCHEMES.  A pattern that starts with a literal is searched for fast; one that starts with
# "(?:https?|ftp)" is tried at every character of the text.
_LINK = re.compile(r"://(?=([^\s/?#\"'<>]+))")
_SCHEMES = ("http", "https", "ftp")
_TAG = re.compile(r"(?is)<(script|style)\b.*?</\1\s*>|<!--.*?-->|<[^>]*>")
_SPACE = re.compile(r"\s+")


def message_tokens(raw: bytes) -> set[str]:
    """The distinct tokens of a message (LF or CRLF line ends)."""
    try:
        wire = to_wire(raw[:MAX_RAW] if len(raw) > MAX_RAW else raw)
        root = parse_message(wire)
    except Exception:  # the message package does not raise; this guards the filter anyway
        return {"shape:unparsable"}
    tokens: set[str] = set()
    _header_tokens(root.fields, tokens)
    budget = MAX_TEXT
    for n, part in enumerate(iter_leaves(root)):
        if n >= MAX_PARTS or budget <= 0:
            break
        mime = f"{part.ctype}/{part.csubtype}"
        if part.ctype != "text":
            tokens.add(f"part:{mime}")
            name = part.param("name") or ""
            if "." in name:
                tokens.add("filename:" + name.rpartition(".")[2].lower()[:8])
            continue
        text = part_text(wire, part)[:budget]
        budget -= len(text)
        if part.csubtype == "html":
            tokens.add("part:text/html")
            text = html_text(text, tokens)
        text_tokens(text, tokens)
    return tokens


def _header_tokens(fields: list[tuple[bytes, bytes]], tokens: set[str]) -> None:
    for name, raw in fields:
        prefix = _HEADERS.get(name)
        if prefix is None:
            continue
        value = decode_header_value(raw.partition(b":")[2])[:2000]
        if prefix == "ctype":
            tokens.add("ctype:" + value.split(";", 1)[0].strip().lower()[:40])
            continue
        for domain in _ADDRESS.findall(value):
            tokens.add(f"{prefix}:@{domain.lower()}")
        tokens.update(f"{prefix}:{word}" for word in _words(value.lower()))
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
    tens>" ("something long was here", not what it was).  Comprehensions over the distinct
    chunks: this runs for every text part of every judged message."""
    words = {chunk.strip(_PUNCTUATION) for chunk in set(text.split())}
    return {
        w if len(w) <= MAX_WORD else f"skip:{w[0]}{len(w) // 10 * 10}"
        for w in words
        if len(w) >= MIN_WORD
    }
