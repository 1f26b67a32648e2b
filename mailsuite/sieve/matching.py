"""Comparators (RFC 4790 as RFC 5228 §2.7.3 uses them) and match types: :is, :contains,
:matches (§2.7.1), :regex (draft-ietf-sieve-regex), :value and :count (RFC 5231)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from mailsuite.sieve.regex import Regex, compile_regex

# A value longer than this is matched on its first part only: a header or body piece cannot
# make one match cost more than this much work.
MAX_MATCH_TEXT = 64 * 1024
# :regex runs in a VM whose cost is text length times program length: a shorter piece.
MAX_REGEX_TEXT = 8 * 1024


class MatchError(Exception):
    """A match that cannot run (a comparator that does not support the match type)."""


@dataclass(frozen=True)
class MatchSpec:
    kind: str = "is"  # is, contains, matches, regex, value, count
    comparator: str = "i;ascii-casemap"
    relation: str = "eq"  # for value and count


def spec_of(tags: dict) -> MatchSpec:
    comparator = tags["comparator"].text if "comparator" in tags else "i;ascii-casemap"
    for kind in ("is", "contains", "matches", "regex"):
        if kind in tags:
            return MatchSpec(kind, comparator)
    for kind in ("value", "count"):
        if kind in tags:
            return MatchSpec(kind, comparator, tags[kind].text.lower())
    return MatchSpec("is", comparator)


def _fold(text: str, comparator: str) -> str:
    if comparator == "i;ascii-casemap":
        # Only ASCII letters fold (RFC 4790 §9.2); str.lower would fold others too, so it
        # serves only for ASCII text (the common case, and much faster than translate).
        return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
    return text


_ASCII_LOWER = {c: c + 32 for c in range(65, 91)}


def _numeric(text: str) -> int | None:
    """RFC 4790 §9.1: the leading digits' value; None (positive infinity) without any."""
    m = re.match(r"[0-9]+", text)
    return int(m.group()) if m else None


def _compare(a: str, b: str, comparator: str) -> int:
    if comparator == "i;ascii-numeric":
        x, y = _numeric(a), _numeric(b)
        if x is None or y is None:
            return (x is None) - (y is None)
        return (x > y) - (x < y)
    if comparator == "i;ascii-casemap":
        a, b = _fold(a, comparator), _fold(b, comparator)
    # i;octet orders by UTF-8 octets, which code point order matches.
    return (a > b) - (a < b)


_RELATIONS = {
    "gt": lambda c: c > 0,
    "ge": lambda c: c >= 0,
    "lt": lambda c: c < 0,
    "le": lambda c: c <= 0,
    "eq": lambda c: c == 0,
    "ne": lambda c: c != 0,
}


def match(spec: MatchSpec, values: list[str], keys: list[str]) -> tuple[bool, list[str] | None]:
    """Whether any value matches any key, and the match variables of the first match
    (:matches and :regex; None otherwise)."""
    if spec.kind == "count":
        count = str(len(values))
        ok = any(_RELATIONS[spec.relation](_compare(count, k, spec.comparator)) for k in keys)
        return ok, None
    if spec.comparator == "i;ascii-numeric" and spec.kind in ("contains", "matches", "regex"):
        raise MatchError(f"{spec.comparator} cannot do :{spec.kind}")
    if spec.kind in ("is", "contains") and spec.comparator != "i;ascii-numeric":
        # The common case, folded once per key rather than once per comparison.
        fold = spec.comparator == "i;ascii-casemap"
        folded = [_fold(k, spec.comparator) for k in keys] if fold else keys
        for value in values:
            v = _fold(value[:MAX_MATCH_TEXT], spec.comparator) if fold else value
            if spec.kind == "is":
                if v in folded:
                    return True, None
            elif any(k in v for k in folded):
                return True, None
        return False, None
    for value in values:
        value = value[:MAX_MATCH_TEXT]
        for key in keys:
            ok, groups = _one(spec, value, key)
            if ok:
                return True, groups
    return False, None


def _one(spec: MatchSpec, value: str, key: str) -> tuple[bool, list[str] | None]:
    kind, comparator = spec.kind, spec.comparator
    if kind == "is":
        return _compare(value, key, comparator) == 0, None
    if kind == "value":
        return _RELATIONS[spec.relation](_compare(value, key, comparator)), None
    if kind == "contains":
        return _fold(key, comparator) in _fold(value, comparator), None
    if kind == "matches":
        casefold = comparator == "i;ascii-casemap"
        return _glob(_wildcard(key, casefold), value, casefold)
    groups = regex_of(key, comparator).search(value[:MAX_REGEX_TEXT])
    return groups is not None, groups


def regex_of(key: str, comparator: str) -> Regex:
    try:
        return compile_regex(key, comparator == "i;ascii-casemap")
    except (ValueError, RecursionError) as e:
        # Only a key built from variables gets here: constant ones were checked at upload.
        raise MatchError(f"invalid regular expression: {e}") from None


@lru_cache(maxsize=512)
def _wildcard(key: str, casefold: bool = False) -> tuple:
    """RFC 5228 §2.7.1: "*" any sequence, "?" one character, "\\" quotes the next.  The
    pattern as a tuple of single characters (folded with `casefold`) and the markers STAR
    and ONE."""
    out: list = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            out.append(key[i + 1])
            i += 2
            continue
        if c == "*":
            if not out or out[-1] is not STAR:
                out.append(STAR)
        else:
            out.append(ONE if c == "?" else c)
        i += 1
    if casefold:
        return tuple(_fold(t, "i;ascii-casemap") if isinstance(t, str) else t for t in out)
    return tuple(out)


STAR, ONE = object(), object()


def _glob(tokens: tuple, text: str, casefold: bool) -> tuple[bool, list[str] | None]:
    """Wildcard matching in O(len(text) * len(tokens)) (the last star takes one more
    character on a mismatch; earlier ones stay as short as possible), with the text each
    wildcard took: RFC 5229 §3.2's ${1}..${N}, ${0} the whole value.  `tokens` are folded
    already when `casefold` (_wildcard)."""
    text_cmp = _fold(text, "i;ascii-casemap") if casefold else text
    n, m = len(text), len(tokens)
    i = p = 0
    star_p, star_i = -1, 0
    spans: dict[int, tuple[int, int]] = {}
    while i < n:
        tok = tokens[p] if p < m else None
        if tok is ONE:
            spans[p] = (i, i + 1)
            i += 1
            p += 1
        elif tok is STAR:
            star_p, star_i = p, i
            spans[p] = (i, i)
            p += 1
        elif tok is not None and tok == text_cmp[i]:
            i += 1
            p += 1
        elif star_p >= 0:
            star_i += 1
            spans[star_p] = (spans[star_p][0], star_i)
            i, p = star_i, star_p + 1
        else:
            return False, None
    while p < m and tokens[p] is STAR:
        spans[p] = (n, n)
        p += 1
    if p != m:
        return False, None
    return True, [text, *(text[spans[k][0] : spans[k][1]] for k in sorted(spans))]
