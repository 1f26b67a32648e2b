"""mailsuite.imap.sequence: RFC 3501 §9 sequence-set, RFC 5182 `$`, RFC 4315 uid-set output."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.sequence import (
    SequenceSet,
    format_sequence_set,
    format_uid_pairs,
    parse_sequence_set,
)


class M:
    def __init__(self, uid):
        self.uid = uid


def test_parse_ranges_and_star():
    s = parse_sequence_set(Atom("1:*,5,7:9"))
    assert s.ranges == ((1, None), (5, 5), (7, 9))
    assert s.resolve(20) == [(1, 20)]
    assert parse_sequence_set("9:7,3").resolve(100) == [(3, 3), (7, 9)]


def test_star_below_low_end_reverses_the_range():
    # RFC 3501 §9: "4:*" with 2 messages means 2:4
    assert parse_sequence_set("4:*").resolve(2) == [(2, 4)]
    assert parse_sequence_set("4:*").contains(3, 2)


def test_membership_and_matcher_agree():
    s = parse_sequence_set("2:4,10,20:*")
    member = s.matcher(25)
    for n in range(1, 30):
        assert member(n) == s.contains(n, 25) == (2 <= n <= 4 or n == 10 or 20 <= n <= 25)


def test_dollar_only_when_allowed():
    assert parse_sequence_set("$").dollar
    with pytest.raises(ImapBad):
        parse_sequence_set("$", allow_dollar=False)


@pytest.mark.parametrize(
    "text",
    ["", "0", "1:0", "a", "1,,2", "1:", ":2", "1:2:3", "*:", "4294967296", "1 2", "-1"]
    + ["01", "00", "12345678901", "\u0663", "1\u0663", "+1"],  # one number read on its own
)
def test_invalid_sets_are_bad(text):
    with pytest.raises(ImapBad):
        parse_sequence_set(text)


def test_one_number_is_one_range():
    assert parse_sequence_set(Atom("7")).ranges == ((7, 7),)
    assert parse_sequence_set("4294967295").ranges == ((4294967295, 4294967295),)


def test_quoted_string_is_not_a_sequence_set():
    with pytest.raises(ImapBad):
        parse_sequence_set(b"1:2")


def test_select_by_sequence_uid_and_saved():
    msgs = [M(u) for u in (3, 5, 8, 13)]
    s = parse_sequence_set("2:3")
    assert [(q, m.uid) for q, m in s.select(msgs, uid=False)] == [(2, 5), (3, 8)]
    assert [m.uid for _, m in parse_sequence_set("4:9").select(msgs, uid=True)] == [5, 8]
    assert [m.uid for _, m in parse_sequence_set("20:*").select(msgs, uid=True)] == [13]
    assert [m.uid for _, m in parse_sequence_set("7:*").select(msgs, uid=False)] == [13]
    saved = parse_sequence_set("$").select(msgs, uid=True, saved_uids=[13, 3])
    assert [(q, m.uid) for q, m in saved] == [(1, 3), (4, 13)]
    assert SequenceSet(((1, None),)).select([], uid=True) == []


def test_format_compact_and_in_order():
    assert format_sequence_set([1, 2, 3, 7, 9, 10, 3]) == "1:3,7,9:10"
    assert format_sequence_set([]) == ""
    assert format_uid_pairs([5, 6, 7, 2, 3]) == "5:7,2:3"
    assert str(parse_sequence_set("1:*,5")) == "1:*,5"


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(min_value=1, max_value=500), min_size=1))
def test_format_then_parse_round_trips(numbers):
    text = format_sequence_set(numbers)
    s = parse_sequence_set(text)
    assert {n for lo, hi in s.resolve(500) for n in range(lo, hi + 1)} == numbers


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789:,*$ x", max_size=20))
def test_random_text_parses_or_is_bad(text):
    try:
        s = parse_sequence_set(text)
    except ImapBad:
        return
    s.resolve(10)


def test_one_number_parsed_again_is_the_same_set():
    # Sets of one number are kept by their text: the next parse of it answers the same.
    first = parse_sequence_set("42")
    assert parse_sequence_set(Atom("42")) == first == SequenceSet(((42, 42),))
    assert parse_sequence_set("42").resolve(10) == [(42, 42)]
    for bad in ("0", "042", "4294967296"):
        for _ in range(2):
            with pytest.raises(ImapBad):
                parse_sequence_set(bad)
