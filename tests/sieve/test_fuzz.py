"""Hypothesis against the parser: whatever the text, parse() returns a Script or raises
SieveError, and does so quickly."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsuite.sieve import EXTENSIONS, SieveError, parse
from mailsuite.sieve.interpreter import run
from mailsuite.sieve.message_view import MessageInput

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


MESSAGE = (
    b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: [x] hello\r\n"
    b"Date: Sat, 05 Dec 2026 10:11:12 +0100\r\nMessage-ID: <1@remote.test>\r\n"
    b"X-Spam-Score: 5\r\n\r\nbody text\r\n"
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join))
def test_scripts_that_parse_run_without_raising(text):
    """Whatever a script that passed the upload checks does, run() returns an Outcome."""
    try:
        script = parse(f"require {list(EXTENSIONS)!r};\n".replace("'", '"') + text)
    except SieveError:
        return
    message = MessageInput(
        MESSAGE,
        "bob@remote.test",
        "alice+x@example.test",
        "alice@example.test",
        folders={"Lists": None, "Junk": "\\Junk"},
        seen=lambda key: None,
    )
    start = time.monotonic()
    outcome = run(script, message)
    assert outcome.stores or outcome.discarded or outcome.reject or outcome.redirects
    assert time.monotonic() - start < 2.0


TESTS = [
    'header :contains "subject" "x"',
    'header :matches "subject" "[*] *"',
    'header :regex "from" "([a-z]+)@"',
    'address :domain "from" "remote.test"',
    'address :detail "to" "x"',
    'envelope :user "to" "alice"',
    'envelope :all "from" ""',
    'exists ["x-spam-score", "list-id"]',
    "size :over 10",
    "size :under 1K",
    "true",
    "false",
    'body :text :contains "body"',
    'body :raw :matches "*text*"',
    'body :content "text" "b"',
    'string :is "${1}" "hello"',
    'string :count "ge" ["a", "", "b"] "2"',
    'hasflag :contains "\\\\Seen"',
    'date :originalzone "date" "year" "2026"',
    'date :index 1 :last :zone "+0200" "date" "hour" "11"',
    'currentdate "weekday" "6"',
    'header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "3"',
    'header :count "eq" :comparator "i;ascii-numeric" "received" "0"',
    "duplicate",
    'duplicate :header "subject" :seconds 60 :last',
    'mailboxexists ["Lists", "Nope"]',
    'specialuse_exists "\\\\Junk"',
    "not anyof (true, false)",
    "allof (true, true)",
]
ACTIONS = [
    "keep;",
    "discard;",
    "stop;",
    'fileinto "Lists";',
    'fileinto :create "New/${1}";',
    'fileinto :copy :flags "\\\\Flagged" "Junk";',
    'fileinto :specialuse "\\\\Junk" "X";',
    'redirect "a@remote.test";',
    'redirect :copy "b@remote.test";',
    'reject "no";',
    'ereject "no";',
    'vacation :days 1 "away";',
    'vacation :seconds 10 :mime "x";',
    'addflag "$a";',
    'setflag "v" "\\\\Seen";',
    'removeflag "$a";',
    'set :upper "v" "${v}x";',
    'set :length "n" "${v}";',
    'addheader "X-A" "${n}";',
    'deleteheader :index 1 "subject";',
    'deleteheader :matches "x-spam-score" "*";',
    'include :optional "none";',
]
block = st.recursive(
    st.lists(st.sampled_from(ACTIONS), max_size=4).map(" ".join),
    lambda inner: st.tuples(st.sampled_from(TESTS), inner, inner).map(
        lambda t: f"if {t[0]} {{ {t[1]} }} else {{ {t[2]} }}"
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(block, max_size=6).map("\n".join))
def test_structured_scripts_run_to_an_outcome(body):
    script = parse(f"require {list(EXTENSIONS)!r};\n".replace("'", '"') + body)
    message = MessageInput(
        MESSAGE,
        "bob@remote.test",
        "alice+x@example.test",
        "alice@example.test",
        folders={"Lists": None, "Junk": "\\Junk"},
        seen=lambda key: None,
    )
    outcome = run(script, message)
    assert outcome.stores or outcome.discarded or outcome.reject or outcome.redirects
    if outcome.errors:
        assert [s.folder for s in outcome.stores] == ["INBOX"]
