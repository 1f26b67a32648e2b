"""Header fields: split a header block into raw fields, unfold values, keep or drop fields
by name (RFC 5322 §2.2)."""

from __future__ import annotations

import functools
import re

__all__ = [
    "parse_fields",
    "field_value",
    "first_value",
    "filter_fields",
    "field_count",
    "unfold",
]

# One field: a name (any printable but ":", 8-bit tolerated), optional WSP (obsolete syntax),
# colon, the rest of the line and any continuation lines (RFC 5322 §2.2.3 folding).  Lines
# that are not fields (no colon) match the second alternative and are skipped by callers.
_FIELD_RE = re.compile(
    rb"(?:([^\x00-\x20\x7f:]+)[ \t]*:[^\n]*|[^\n]*)(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*"
)
_UNFOLD_RE = re.compile(rb"\r?\n(?=[ \t])")


def unfold(value: bytes) -> bytes:
    """A header value with its folding line ends removed (RFC 5322 §2.2.3)."""
    if b"\n " not in value and b"\n\t" not in value:
        return value  # not folded (most values): two searches instead of the regex engine
    return _UNFOLD_RE.sub(b"", value)


def parse_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """`[(lowercased name, raw field incl. its CRLF)]` for every well-formed field, in order."""
    out = []
    for m in _FIELD_RE.finditer(block):
        name = m.group(1)
        if name:
            out.append((name.lower(), m.group(0)))
    return out


def field_value(raw_field: bytes) -> bytes:
    """Unfolded value of a raw field: after the colon, leading WSP and the line end dropped."""
    v = unfold(raw_field[raw_field.index(b":") + 1 :])
    return v.strip(b" \t\r\n")


def first_value(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for n, raw in fields:
        if n == name:
            return field_value(raw)
    return None


def filter_fields(block: bytes, names: frozenset[bytes] | set[bytes], exclude: bool) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS (exclude=False) / HEADER.FIELDS.NOT (exclude=True).

    `names` are lower-case.  Matching is case-insensitive but otherwise exact; the delimiting
    blank line is always included in the result.
    """
    if not exclude:
        # Hot path (clients page through HEADER.FIELDS of every message): one regex that
        # only stops at the requested fields.
        found = _fields_regex(frozenset(names)).findall(block)
        if found and not found[-1].endswith(b"\n"):
            found[-1] += b"\r\n"
        found.append(b"\r\n")
        return b"".join(found)
    out = []
    for m in _FIELD_RE.finditer(block):
        f = m.group(0)
        name = m.group(1)
        if name is None:
            if f in (b"\r\n", b"\n", b""):
                continue  # the blank line (added back below) or the end
        elif name.lower() in names:
            continue
        if not f.endswith(b"\n"):
            f += b"\r\n"
        out.append(f)  # lines that are not fields stay, as Dovecot keeps them
    if block.endswith(b"\r\n\r\n") or block == b"\r\n":
        out.append(b"\r\n")  # the blank line only when the header has one
    return b"".join(out)


@functools.lru_cache(maxsize=256)
def _fields_regex(names: frozenset[bytes]) -> re.Pattern:
    alts = b"|".join(re.escape(n) for n in sorted(names)) or b"(?!)"
    return re.compile(
        rb"^(?:" + alts + rb")[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*",
        re.IGNORECASE | re.MULTILINE,
    )


def field_count(block: bytes, name: bytes) -> int:
    """How many fields named `name` (any case) the header `block` has, each found where its
    line starts: a folded line of another field (which starts with white space) is not one."""
    return len(_name_regex(name).findall(block))


@functools.lru_cache(maxsize=16)
def _name_regex(name: bytes) -> re.Pattern:
    return re.compile(rb"^" + re.escape(name) + rb"[ \t]*:", re.IGNORECASE | re.MULTILINE)
