"""LIST/LSUB patterns (RFC 3501 §6.3.8): `*` matches anything, `%` anything but "/".  The
matcher against a plain recursive reading of the rule, and against a pattern built to make a
backtracking matcher take minutes."""

from __future__ import annotations

import functools
import threading

from hypothesis import given
from hypothesis import strategies as st

from mailsuite.imap.commands.list_pattern import MailboxPattern
from tests.imap.conftest import Raw


def reference(pattern: str, name: str) -> bool:
    """The rule read literally: try every split at each wildcard (memoized, so finite)."""

    @functools.cache
    def match(p: int, n: int) -> bool:
        if p == len(pattern):
            return n == len(name)
        ch = pattern[p]
        if ch in "*%":
            if match(p + 1, n):
                return True
            return n < len(name) and (ch == "*" or name[n] != "/") and match(p, n + 1)
        return n < len(name) and name[n] == ch and match(p + 1, n + 1)

    return match(0, 0)


@given(st.text("ab/*%", max_size=9), st.text("ab/", max_size=10))
def test_the_matcher_follows_the_rule(pattern, name):
    assert MailboxPattern(pattern).matches(name) == reference(pattern, name)


def test_wildcards_in_runs_and_names_longer_than_the_pattern():
    assert MailboxPattern("a**%%*b").matches("a/x/b")
    assert not MailboxPattern("a%%b").matches("a/b")
    assert MailboxPattern("%").matches("") and not MailboxPattern("x").matches("")
    assert not MailboxPattern("abc").matches("ab")


def test_many_stars_against_a_long_name_answer_at_once_and_others_go_on(imap_server):
    """`*a*a*...*b` against a name of 48 a's: a regular expression made of the pattern tried
    every way of splitting the name and held the reactor for minutes."""
    busy = Raw(imap_server.port("imap"))
    busy.login()
    assert busy.cmd(b"CREATE " + b"a" * 48, b"c")[-1].startswith(b"c OK")
    other = Raw(imap_server.port("imap"))
    other.login()
    answers: list[list[bytes]] = []
    listing = threading.Thread(
        target=lambda: answers.append(busy.cmd(b'LIST "" "' + b"*a" * 25 + b'b"', b"l"))
    )
    listing.start()
    assert other.cmd(b"NOOP", b"n")[-1] == b"n OK NOOP completed"
    listing.join(10)
    assert answers == [[b"l OK LIST completed"]]
    # The same pattern ending in "a" does match it.
    lines = busy.cmd(b'LIST "" "' + b"*a" * 25 + b'"', b"m")
    assert lines == [b'* LIST (\\HasNoChildren) "/" ' + b"a" * 48, b"m OK LIST completed"]
