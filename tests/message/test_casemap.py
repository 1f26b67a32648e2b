"""mailsuite.message.casemap: i;unicode-casemap (RFC 5051 §2), the comparator SEARCH, SORT and
THREAD share: each form as the RFC defines it, idempotent, per character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.message.casemap import casemap, casemap_char, substring_test

CASES = [
    # ASCII: titlecase of a letter is its upper case; nothing else changes
    ("Hello, World_[x]", "HELLO, WORLD_[X]"),
    # simple titlecase only: ß's titlecase "Ss" is two characters, so ß stays
    ("Straße", "STRAßE"),
    ("ẞ", "ẞ"),
    # Turkish: ı titlecases to I; İ decomposes to I + COMBINING DOT ABOVE
    ("ıi", "II"),
    ("İ", "I\u0307"),
    # Greek: final and medial sigma both titlecase to Σ; ypogegrammeni titlecases to Ι
    ("σοφος", "ΣΟΦΟΣ"),
    ("ᾳ", "\u0391\u0399"),
    # compatibility decompositions, their characters mapped again (RFC 5051 repeats both steps)
    ("ﬁsh", "FISH"),
    ("Ａｂｃ", "ABC"),
    ("ǆ", "DZ\u030c"),
    ("ŉ", "\u02bcN"),
    ("ſ", "S"),
    ("K", "K"),  # KELVIN SIGN: a canonical singleton decomposition
    ("½", "1\u20442"),
    # beyond the Basic Multilingual Plane too: mathematical bold A, Deseret small long i
    ("\U0001d400b\U00010428", "AB\U00010400"),
    # canonical decompositions: é and e + U+0301 have one form
    ("café", "CAFE\u0301"),
    ("cafe\u0301", "CAFE\u0301"),
    ("Ǻ", "A\u030a\u0301"),
    # no reordering of combining marks (not NFD) and no algorithmic Hangul decomposition
    ("e\u0301\u0327", "E\u0301\u0327"),
    ("대한", "대한"),
]


@pytest.mark.parametrize("text,form", CASES)
def test_casemap_follows_rfc5051_section2(text, form):
    assert casemap(text) == form


def test_every_character_maps_to_characters_that_map_to_themselves():
    """The repetition of RFC 5051 §2 ends: no character of any form changes again."""
    for code in range(0x110000):
        for ch in casemap_char(chr(code)):
            assert casemap_char(ch) == ch, hex(code)


def test_the_translation_table_holds_each_characters_form():
    text = "".join(chr(code) for code in range(0x80, 0x10000))
    assert casemap(text) == "".join(casemap_char(ch) for ch in text)


TRICKY = "\U0001d400\U00010428aAbBzZ _[]éÉeE\u0301\u0327ßẞsSſıiIİσςΣﬁfFＡａΩΩKkǆǅǄ대한0123"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=TRICKY, max_size=12), st.text(alphabet=TRICKY, max_size=12))
def test_casemap_is_per_character_and_idempotent(a, b):
    assert casemap(casemap(a)) == casemap(a)
    assert casemap(a + b) == casemap(a) + casemap(b)
    # substring under the comparator: a value contains the needle's form iff its form does
    if a in b:
        assert casemap(a) in casemap(b)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=TRICKY, max_size=4), st.lists(st.text(alphabet=TRICKY, max_size=30)))
def test_substring_test_is_the_rfc5051_substring_operation(needle, texts):
    """The sieve before the mapping never changes an answer."""
    contains = substring_test(casemap(needle))
    for text in texts:
        assert contains(text) == (casemap(needle) in casemap(text))


_CASED = st.characters(
    min_codepoint=0x41, max_codepoint=0x4FF, categories=("Lu", "Ll", "Lt")
).filter(lambda c: len(c.upper()) == 1 and len(c.lower()) == 1)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_CASED, max_size=10))
def test_upper_and_lower_case_compare_equal(text):
    assert casemap(text.upper()) == casemap(text.lower())
