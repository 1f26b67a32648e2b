"""A Sieve script's quoted strings are read in time proportional to their length: the next
quote was looked for again after each escape, to the end of the script each time."""

from __future__ import annotations

from mailsuite.sieve.grammar import tokenize
from tests.cpu_bound import cpu_seconds


def test_a_string_of_many_escapes_far_from_its_closing_quote():
    n = 1_500_000
    script = 'if header :is "a" "' + "\\a" * n + '" { keep; }'
    with cpu_seconds(5):
        tokens = tokenize(script)
    assert tokens[4].value.text == "a" * n
