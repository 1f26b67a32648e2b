"""The `:regex` match type (draft-ietf-sieve-regex): POSIX extended regular expressions,
translated to Python's `re`.

Patterns whose repetition nests (`(a+)+`, `(x*y?)*`) are refused: with a backtracking engine
they can take exponential time on a short header, and a delivery must stay bounded.
"""

from __future__ import annotations

import re
from functools import lru_cache

_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r" \t\r\n\v\f",
    "blank": r" \t",
    "punct": r"!-/:-@\[-`{-~",
    "print": r" -~",
    "graph": r"!-~",
    "cntrl": r"\x00-\x1f\x7f",
    "xdigit": "0-9A-Fa-f",
}
_QUANT = "*+?{"


def translate(pattern: str) -> str:
    """POSIX ERE -> Python syntax; ValueError for what cannot be run safely."""
    out: list[str] = []
    i, n = 0, len(pattern)
    # Per open group: whether a quantifier occurred inside it.
    stack: list[bool] = []
    last_group_quantified = False  # the atom just closed was a group holding a quantifier
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            last_group_quantified = False
            continue
        if c == "[":
            end, text = _bracket(pattern, i)
            out.append(text)
            i = end
            last_group_quantified = False
            continue
        if c == "(":
            stack.append(False)
            out.append("(")
        elif c == ")":
            if not stack:
                raise ValueError("unbalanced parenthesis")
            inner = stack.pop()
            out.append(")")
            i += 1
            last_group_quantified = inner
            continue
        elif c == "|":
            out.append("|")
        elif c in _QUANT:
            if last_group_quantified:
                raise ValueError("nested repetition is not allowed")
            if stack:
                stack[-1] = True
            if c == "{":
                end = pattern.find("}", i)
                if end < 0 or not re.fullmatch(r"\{[0-9]+(,[0-9]*)?\}", pattern[i : end + 1]):
                    raise ValueError("bad interval")
                out.append(pattern[i : end + 1])
                i = end + 1
                last_group_quantified = False
                continue
            out.append(c)
        else:
            out.append(re.escape(c) if c not in ".^$" else c)
        last_group_quantified = False
        i += 1
    if stack:
        raise ValueError("unbalanced parenthesis")
    return "".join(out)


def _bracket(pattern: str, start: int) -> tuple[int, str]:
    i = start + 1
    n = len(pattern)
    out = ["["]
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < n:
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return i + 1, "".join(out)
        if c == "[" and pattern.startswith("[:", i):
            end = pattern.find(":]", i)
            name = pattern[i + 2 : end] if end > 0 else ""
            if name not in _CLASSES:
                raise ValueError("unknown character class")
            out.append(_CLASSES[name])
            i = end + 2
        elif c in "\\[]^":
            out.append("\\" + c)
            i += 1
        else:
            out.append(c)
            i += 1
        first = False
    raise ValueError("unterminated bracket expression")


@lru_cache(maxsize=256)
def compile_regex(pattern: str, casefold: bool) -> re.Pattern:
    return re.compile(translate(pattern), re.S | (re.I | re.ASCII if casefold else 0))
