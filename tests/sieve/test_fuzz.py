"""Hypothesis against the parser: whatever the text, parse() returns a Script or raises
SieveError, and does so quickly."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsuite.sieve import EXTENSIONS, SieveError, parse

WORDS = [
    "require",
    "if",
    "elsif",
    "else",
    "keep",
    "discard",
    "stop",
    "fileinto",
    "redirect",
    "reject",
    "ereject",
    "vacation",
    "set",
    "addflag",
    "setflag",
    "removeflag",
    "hasflag",
    "header",
    "address",
    "envelope",
    "exists",
    "size",
    "allof",
    "anyof",
    "not",
    "true",
    "false",
    "body",
    "string",
    "date",
    "currentdate",
    "duplicate",
    "include",
    "return",
    "global",
    "addheader",
    "deleteheader",
    "mailboxexists",
    "specialuse_exists",
    ":is",
    ":contains",
    ":matches",
    ":regex",
    ":value",
    ":count",
    ":comparator",
    ":over",
    ":under",
    ":copy",
    ":create",
    ":flags",
    ":days",
    ":seconds",
    ":index",
    ":last",
    ":detail",
    ":user",
    ":all",
    ":domain",
    ":localpart",
    ":text",
    ":raw",
    ":content",
    ":zone",
    ":originalzone",
    ":once",
    ":optional",
    ":global",
    ":personal",
    ":specialuse",
    ":mime",
    ":handle",
    ":from",
    ":subject",
    ":addresses",
    ":lower",
    ":upper",
    ":length",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "1",
    "10K",
    "2M",
    "text:\nx\n.\n",
    '"a"',
    '"${1}"',
    '"${hex:41}"',
    '"${unicode:263a}"',
    '"i;ascii-numeric"',
    '"gt"',
    '"(a+)+"',
    '"[[:alpha:]]*"',
    '"year"',
    '"+0100"',
    "# c\n",
    "/* c */",
    "\n",
] + [f'"{e}"' for e in EXTENSIONS]

tokens = st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join)


def check(text: str) -> None:
    start = time.monotonic()
    try:
        parse(text)
    except SieveError as e:
        assert isinstance(e.line, int) and e.line >= 1
        assert str(e).startswith(f"line {e.line}: ")
    assert time.monotonic() - start < 2.0


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tokens)
def test_token_soup_only_raises_sieve_error(text):
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_only_raises_sieve_error(text):
    check(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join))
def test_with_everything_required(text):
    check(f"require {list(EXTENSIONS)!r};\n".replace("'", '"') + text)


def test_huge_inputs_stay_fast():
    for text in ("[" + '"a",' * 20000 + '"a"]', "(" * 5000, "{" * 5000, '"' + "\\" * 100001):
        check(text)
