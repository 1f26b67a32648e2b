"""i;unicode-casemap (RFC 5051): the one comparison form of text for case-insensitive matching
and ordering.

IMAP SEARCH, SORT and THREAD compare with it (RFC 5255 §4.2, I18NLEVEL=1): two strings are
equal when their forms are equal, one contains the other when its form does, and they order
as their forms do (code point order, which is UTF-8 octet order).

    casemap("Straße")  -> "STRAßE"   (ß has no one-character titlecase: it stays)
    casemap("café")    -> "CAFE\u0301"
    casemap("ﬁsh")     -> "FISH"

The mapping is per character and comes from the Unicode Character Database alone, as the RFC
says: the simple titlecase mapping, then the decomposition mapping (canonical or
compatibility, the tag dropped), both again on every character a decomposition yields.  It is
not NFKD plus casefold: SpecialCasing's many-character mappings (ß -> SS), canonical
reordering of combining marks and the algorithmic Hangul decomposition are not part of it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

__all__ = ["casemap", "casemap_char", "substring_test"]


def casemap(text: str) -> str:
    """The titlecased canonical form of text (RFC 5051 §2)."""
    if text.isascii():
        # ASCII has no decompositions and titlecase is uppercase: the common case in one call.
        return text.upper()
    if _ASTRAL.search(text) is None:
        # A list indexed by code point translates two to three times faster than a mapping.
        return text.translate(_BMP or _bmp_table())
    return text.translate(_FORMS)


def casemap_char(ch: str) -> str:
    """The form of one character: RFC 5051 §2 steps (1) and (2), repeated on the result."""
    # (1) the simple titlecase mapping (UnicodeData field 14).  str.title() gives the full
    # mapping; where that is one character it is the simple one, and where it is longer
    # (SpecialCasing: ß -> Ss, ﬁ -> Fi) the simple mapping is the character itself.
    titled = ch.title()
    if len(titled) != 1:
        titled = ch
    # (2) the decomposition mapping (UnicodeData field 5), any tag such as <compat> or <wide>
    # dropped; each character it yields is mapped again from (1).
    decomposition = unicodedata.decomposition(titled).split()
    if decomposition and decomposition[0].startswith("<"):
        decomposition = decomposition[1:]
    if not decomposition:
        return titled
    return "".join(casemap_char(chr(int(code, 16))) for code in decomposition)


class _Forms(dict):
    """Code point -> form, filled on first use (str.translate's table).  The table is bounded
    by the characters that occur, each computed once; worker threads share it safely since a
    form never changes and a dict store is atomic."""

    def __missing__(self, code: int) -> str:
        form = casemap_char(chr(code))
        self[code] = form
        return form


_FORMS = _Forms()


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_BMP: list = []


def _bmp_table() -> list:
    """The form of every Basic Multilingual Plane character (an int: the character itself),
    built at the first non-ASCII text: 20 ms, about 2 MB."""
    table = []
    for code in range(0x10000):
        form = casemap_char(chr(code))
        table.append(code if form == chr(code) else form)
    _BMP[:] = table
    return _BMP


def substring_test(form: str) -> Callable[[str], bool]:
    """text -> whether `form` (a needle already in casemap form) occurs in casemap(text): the
    RFC 5051 substring operation, for one needle against many texts.

    Mapping a long text costs more than scanning it, so a text is mapped only when, for each
    of the needle's characters (up to six), it holds a character whose form contains that
    one: a text without cannot contain the needle.  (Texts beyond the Basic Multilingual
    Plane are always mapped.)"""
    if not form:
        return lambda text: True
    sieves: list[re.Pattern] = []

    def contains(text: str) -> bool:
        if text.isascii():
            return form in text.upper()
        if _ASTRAL.search(text) is None:
            if not sieves:
                sieves.extend(_sieves_for(form))
            for sieve in sieves:
                if sieve.search(text) is None:
                    return False
        return form in casemap(text)

    return contains


def _sieves_for(form: str) -> list[re.Pattern]:
    """Character classes of the BMP characters whose forms hold each character of `form`,
    the characters fewest others map to first."""
    sources = _sources()
    chars = sorted(set(form), key=lambda ch: len(sources.get(ch, "")))[:6]
    return [re.compile("[" + re.escape(sources.get(ch, ch)) + "]") for ch in chars]


_SOURCES: dict[str, str] = {}


def _sources() -> dict[str, str]:
    """Character -> the BMP characters whose forms contain it (built once, about 30 ms)."""
    if not _SOURCES:
        found: dict[str, list[str]] = {}
        for code, form in enumerate(_BMP or _bmp_table()):
            ch = chr(code)
            for part in set(ch if isinstance(form, int) else form):
                found.setdefault(part, []).append(ch)
        _SOURCES.update((k, "".join(v)) for k, v in found.items())
    return _SOURCES
