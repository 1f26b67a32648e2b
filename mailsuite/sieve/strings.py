"""String forms inside Sieve scripts: encoded characters (RFC 5228 §2.4.2.4) decoded at parse
time, variable references (RFC 5229 §3) expanded at run time."""

from __future__ import annotations

import re

from mailsuite.sieve.grammar import SieveError

_ENCODED = re.compile(
    r"\$\{(hex|unicode):([ \t\r\n]*[0-9A-Fa-f]+(?:[ \t\r\n]+[0-9A-Fa-f]+)*[ \t\r\n]*)\}", re.I
)
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REFERENCE = re.compile(r"\$\{((?:" + _IDENT + r"\.)*(?:" + _IDENT + r"|[0-9]+))\}")
_NAME = re.compile(r"(?:" + _IDENT + r"\.)*" + _IDENT + r"\Z")
_PLAIN_NAME = re.compile(_IDENT + r"\Z")


def decode_encoded(text: str, line: int) -> str:
    """Replace ${hex:..} and ${unicode:..}; a sequence that does not fit the syntax stays as
    written, a code point outside Unicode is an error."""
    if "${" not in text:
        return text

    def one(m: re.Match) -> str:
        kind = m.group(1).lower()
        items = m.group(2).split()
        if kind == "hex":
            if any(len(item) % 2 for item in items):
                return m.group()
            return bytes.fromhex("".join(items)).decode("utf-8", "replace")
        out = []
        for item in items:
            code = int(item, 16)
            # RFC 5228 §2.4.2.4: surrogates and values beyond 10FFFF are errors.
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise SieveError(line, f"invalid Unicode character {item}")
            out.append(chr(code))
        return "".join(out)

    return _ENCODED.sub(one, text)


def has_variables(text: str, enabled: bool) -> bool:
    return enabled and _REFERENCE.search(text) is not None


def valid_variable_name(text: str, allow_namespace: bool) -> bool:
    return bool((_NAME if allow_namespace else _PLAIN_NAME).match(text))


def expand(text: str, variables: dict[str, str], matches: list[str], limit: int) -> str:
    """RFC 5229 §3: ${name} and ${N}; unknown names expand to nothing.  The result is cut
    at `limit` characters (the run's bound on a variable's size)."""
    if "${" not in text:
        return text

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name.isdigit():
            index = int(name)
            return matches[index] if index < len(matches) else ""
        return variables.get(name.lower(), "")

    return _REFERENCE.sub(one, text)[:limit]


def quote_wildcard(text: str) -> str:
    """RFC 5229 §4.1 :quotewildcard: the string matches itself under :matches."""
    return re.sub(r"([*?\\])", r"\\\1", text)


def quote_regex(text: str) -> str:
    """draft-ietf-sieve-regex §5 :quoteregex: the string matches itself under :regex."""
    return re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", text)
