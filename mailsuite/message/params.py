"""Structured header values: `type/subtype; name=value` parameters (RFC 2045 §5.1) with
RFC 2231 continuations, comments (RFC 5322 §3.2.2) and tokens."""

from __future__ import annotations

import re

from mailsuite.message.decode import decode_charset

__all__ = [
    "is_token",
    "strip_comments",
    "parse_params",
    "param_value",
    "content_type",
    "decode_rfc2231",
]

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~\x80-\U0010ffff]+\Z")


def is_token(s: str) -> bool:
    return bool(_TOKEN_RE.match(s))


def content_type(value: bytes) -> tuple[str | None, str | None, list[tuple[str, str]]]:
    """(type, subtype, parameters) of a Content-Type value, type and subtype as written, or
    None and None when they are not two tokens (the default type then applies)."""
    main, params = parse_params(value)
    t, sep, s = main.partition("/")
    t, s = t.strip(), s.strip()
    if sep and is_token(t) and is_token(s):
        return t, s, params
    return None, None, params


def param_value(params: list[tuple[str, str]], name: str) -> str | None:
    """The value of parameter `name` in parse_params' list (names compare in any case)."""
    name = name.lower()
    for k, v in params:
        if k.lower() == name:
            return v
    return None


def strip_comments(s: str) -> str:
    if "(" not in s:
        return s
    out = []
    depth = 0
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if quoted:
            out.append(c)
            if c == "\\" and i + 1 < len(s):
                out.append(s[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif depth:
            if c == "\\":
                i += 1
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
        elif c == "(":
            depth = 1
        else:
            if c == '"':
                quoted = True
            out.append(c)
        i += 1
    return "".join(out)


def _split_semicolons(s: str) -> list[str]:
    if '"' not in s:
        return s.split(";")
    parts = []
    buf = []
    quoted = False
    i = 0
    while i < len(s):
        c = s[i]
        if quoted:
            buf.append(c)
            if c == "\\" and i + 1 < len(s):
                buf.append(s[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            buf.append(c)
        elif c == ";":
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
        i += 1
    parts.append("".join(buf))
    return parts


_QUOTED_VALUE_RE = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.S)


def _unquote(v: str) -> str:
    v = v.strip(" \t\r\n")
    if v.startswith('"'):
        # the quoted string up to its closing quote; anything after it is junk
        inner = _QUOTED_VALUE_RE.match(v).group(1)
        return re.sub(r"\\(.)", r"\1", inner)
    # a token ends at whitespace (RFC 2045 §5.1); what follows is junk, as Dovecot reads it
    return v.split(None, 1)[0] if v else v


_SECTION_RE = re.compile(r"^(.*?)\*(\d+)(\*?)$|^(.*?)(\*)$")


def parse_params(value: bytes) -> tuple[str, list[tuple[str, str]]]:
    """`type/subtype; a=b; c="d"` into (main value, [(name, value)]), never raising.

    Strings are bytes decoded as UTF-8 with surrogateescape, so 8-bit values survive exactly.
    RFC 2231 continuations are merged; an extended (charset'lang'%XX) value keeps its
    encoded form under the name `name*`, as IMAP servers report it in BODYSTRUCTURE.
    """
    s = strip_comments(value.decode("utf-8", "surrogateescape"))
    pieces = _split_semicolons(s)
    main = pieces[0].strip(" \t\r\n")
    raw: list[tuple[str, str]] = []
    for p in pieces[1:]:
        name, eq, v = p.partition("=")
        name = name.strip(" \t\r\n")
        if not eq or not name:
            continue
        raw.append((name, _unquote(v)))
    return main, _merge_rfc2231(raw)


def _merge_rfc2231(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    if not any("*" in n for n, _ in raw):
        return raw
    order: list[str] = []
    plain: dict[str, tuple[str, str]] = {}
    sections: dict[str, list[tuple[int, bool, str]]] = {}
    names: dict[str, str] = {}
    for name, v in raw:
        m = _SECTION_RE.match(name)
        if m is None:
            key = name.lower()
            if key not in plain and key not in sections:
                order.append(key)
            plain.setdefault(key, (name, v))
            continue
        if m.group(1) is not None:
            base, idx, ext = m.group(1), int(m.group(2)), bool(m.group(3))
        else:
            base, idx, ext = m.group(4), 0, True
        key = base.lower()
        if key not in plain and key not in sections:
            order.append(key)
        names.setdefault(key, base)
        sections.setdefault(key, []).append((idx, ext, v))
    out = []
    # Plain parameters first, then the merged RFC 2231 ones (Dovecot's order).
    order = [k for k in order if k not in sections] + [k for k in order if k in sections]
    for key in order:
        if key in sections:
            segs = sorted(sections[key], key=lambda t: t[0])
            if any(ext for _, ext, _ in segs):
                # An unencoded segment inside an extended value is percent-encoded so the
                # whole value stays in charset'lang'%XX form.
                val = "".join(
                    v if ext else re.sub(r"[^A-Za-z0-9._~-]", lambda m: _pct(m.group(0)), v)
                    for _, ext, v in segs
                )
                out.append((names[key] + "*", val))
            else:
                out.append((names[key], "".join(v for _, _, v in segs)))
        else:
            out.append(plain[key])
    return out


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def decode_rfc2231(value: str) -> str:
    """`utf-8'en'%E2%82%AC` to text (for SEARCH and display, not for BODYSTRUCTURE)."""
    charset, q1, rest = value.partition("'")
    if not q1:
        return value
    _lang, _q2, enc = rest.partition("'")
    data = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), enc).encode(
        "latin-1", "replace"
    )
    return decode_charset(data, charset)
