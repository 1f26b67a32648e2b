"""Authentication-Results header fields (RFC 8601): formatting ours, removing forged ones.

Pure functions over bytes.  Our header names ``config.hostname`` as authserv-id; §5 requires a
receiver to delete (or rename) any such field already in the message that claims our
authserv-id, since only we can have added it and downstream filters trust it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailsuite.message.lines import header_end

# RFC 2045 token characters (RFC 8601 §2.2: value = token / quoted-string).
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_FIELD_NAME = b"authentication-results"


@dataclass(frozen=True)
class ResInfo:
    """One ``method=result`` clause with an optional reason comment and properties."""

    method: str  # spf, dkim, dmarc
    result: str
    comment: str = ""
    props: list[tuple[str, str]] = field(default_factory=list)  # ("smtp.mailfrom", value)


def quote_value(value: str) -> str:
    """A pvalue as token when possible, else as a quoted-string (RFC 5322 §3.2.4)."""
    if _TOKEN.match(value):
        return value
    if "@" in value:
        local, _, domain = value.rpartition("@")
        if (not local or _TOKEN.match(local)) and _TOKEN.match(domain):
            return value  # §2.3: pvalue = [ [ local-part ] "@" ] domain-name
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _comment(text: str) -> str:
    # Keep comments printable and balanced: parentheses inside would end the comment early.
    clean = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in "()\\" else " " for ch in text)
    return f" ({clean.strip()})" if clean.strip() else ""


def format_header(authserv_id: str, results: list[ResInfo], linesep: bytes = b"\r\n") -> bytes:
    """The whole header field, folded one clause per line, ending in `linesep`."""
    parts = [authserv_id]
    for r in results:
        text = f"{r.method}={r.result}{_comment(r.comment)}"
        for name, value in r.props:
            text += f" {name}={quote_value(value)}"
        parts.append(text)
    if not results:
        parts.append("none")  # §2.2: no-result
    body = (";" + linesep.decode() + "\t").join(parts)
    return b"Authentication-Results: " + body.encode("utf-8", "replace") + linesep


def _skip_cfws(text: str, i: int) -> int:
    """Index after whitespace and (nested) comments starting at `i`."""
    depth = 0
    while i < len(text):
        ch = text[i]
        if depth:
            if ch == "\\":
                i += 1
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
        elif ch == "(":
            depth = 1
        elif ch not in " \t\r\n":
            break
        i += 1
    return i


def authserv_id(value: bytes) -> str | None:
    """The authserv-id at the start of an Authentication-Results value, or None."""
    text = value.decode("utf-8", "replace")
    i = _skip_cfws(text, 0)
    if i >= len(text):
        return None
    if text[i] == '"':
        out = []
        i += 1
        while i < len(text) and text[i] != '"':
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            out.append(text[i])
            i += 1
        return "".join(out)
    m = re.match(r"[^\s;()]+", text[i:])
    return m.group(0) if m else None


def _header_fields(data: bytes) -> tuple[list[bytes], int]:
    """Split the header section into raw fields (continuations kept); returns (fields, end)."""
    # Each field's lines are gathered and joined once: adding each continuation line to the
    # field's bytes copied the field again for every line (quadratic in a long fold).
    fields: list[list[bytes]] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl + 1
        line = data[pos:end]
        if line in (b"\r\n", b"\n"):
            break  # the empty line ending the header section
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
        pos = end
    return [b"".join(lines) for lines in fields], pos


def is_ours(raw_field: bytes, our_id: str) -> bool:
    """Whether a raw header field is an Authentication-Results claiming `our_id`."""
    name, colon, value = raw_field.partition(b":")
    if not colon or name.strip().lower() != _FIELD_NAME:
        return False
    found = authserv_id(value)
    return found is not None and found.lower().rstrip(".") == our_id.lower().rstrip(".")


def strip_forged(data: bytes, our_id: str) -> tuple[bytes, int]:
    """Remove Authentication-Results fields that claim `our_id`; returns (data, how many)."""
    if _FIELD_NAME not in data[: header_end(data)].lower():
        return data, 0  # most messages: no such field to look at, no split into fields
    fields, end = _header_fields(data)
    kept = [f for f in fields if not is_ours(f, our_id)]
    removed = len(fields) - len(kept)
    if not removed:
        return data, 0
    return b"".join(kept) + data[end:], removed
