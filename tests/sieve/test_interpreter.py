"""run(): the semantics of each extension as a pure function (no server): match variables,
:count, :index, editheader, set modifiers, limits, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from mailsuite.sieve import parse
from mailsuite.sieve.actions import Store
from mailsuite.sieve.interpreter import Limits, run
from mailsuite.sieve.message_view import MessageInput

RAW = (
    b"Received: from a by b; Sat, 05 Dec 2026 09:00:00 +0000\r\n"
    b"Received: from c by d; Sat, 05 Dec 2026 09:30:00 +0000\r\n"
    b"From: Bob Example <bob@remote.test>\r\n"
    b"To: alice@example.test, carol@example.test\r\n"
    b"Cc: dave+x@example.test\r\n"
    b"Subject: =?utf-8?q?caf=C3=A9?= [news] weekly\r\n"
    b"Date: Sat, 05 Dec 2026 23:30:00 -0800\r\n"
    b"Message-ID: <m1@remote.test>\r\n"
    b"X-Spam-Score: 7\r\n"
    b"X-Tag: first\r\nX-Tag: second\r\nX-Tag: third\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b"\r\n'
    b"\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8gd29ybGQ=\r\n--b\r\nContent-Type: text/html\r\n\r\n<p>html part</p>\r\n--b--\r\n"
)
NOW = datetime(2026, 12, 6, 8, 0, 0, tzinfo=timezone(timedelta(hours=1)))


def go(script: str, raw: bytes = RAW, **kw):
    base = dict(
        mail_from="bob@remote.test",
        recipient="alice+tag@example.test",
        mailbox="alice@example.test",
        now=NOW,
        folders={"Lists": None, "Junk": "\\Junk", "Sent": "\\Sent"},
    )
    base.update(kw)
    limits = base.pop("limits", None)
    return run(parse(script), MessageInput(raw, **base), limits)


def folders(outcome) -> list[str]:
    return [s.folder for s in outcome.stores]


def test_implicit_keep_alone():
    out = go("")
    assert out.stores == [Store("INBOX")] and not out.errors


def test_implicit_keep_goes_to_the_given_folder():
    assert folders(go("", folder="Junk")) == ["Junk"]


def test_match_variables_rfc5229_3_2():
    out = go(
        'require ["variables", "fileinto"];\n'
        'if header :matches "subject" "* [*] *" { set "a" "${1}|${2}|${3}"; }\n'
        'if string :is "${a}" "caf\u00e9|news|weekly" { fileinto "Lists"; }\n'
    )
    assert folders(out) == ["Lists"]


def test_count_and_value_rfc5231():
    s = 'require ["relational", "comparator-i;ascii-numeric"];\n'
    assert go(
        s + 'if address :count "eq" :comparator "i;ascii-numeric" ["to", "cc"] "3" { discard; }'
    ).discarded
    assert go(
        s + 'if header :value "gt" :comparator "i;ascii-numeric" "x-spam-score" "5" { discard; }'
    ).discarded
    assert not go(
        s + 'if header :value "lt" :comparator "i;ascii-numeric" "x-spam-score" "5" { discard; }'
    ).discarded
    # i;ascii-casemap orders as text: "7" > "10"
    assert go(s + 'if header :value "gt" "x-spam-score" "10" { discard; }').discarded


def test_index_and_last_rfc5260_3():
    s = 'require ["index", "date", "relational"];\n'
    assert go(
        s + 'if date :index 1 :zone "+0000" "received" "time" "09:00:00" { discard; }'
    ).discarded
    assert go(
        s + 'if date :index 1 :last :zone "+0000" "received" "time" "09:30:00" { discard; }'
    ).discarded
    assert go(s + 'if header :index 2 :matches "received" "from c *" { discard; }').discarded


def test_date_zones_rfc5260_4():
    s = 'require "date";\n'
    assert go(s + 'if date :originalzone "date" "zone" "-0800" { discard; }').discarded
    assert go(s + 'if date :zone "+0000" "date" "date" "2026-12-06" { discard; }').discarded
    # Without a zone, the "local" zone is the delivery's (NOW is +0100).
    assert go(s + 'if date "date" "hour" "08" { discard; }').discarded
    assert go(s + 'if date :originalzone "date" "weekday" "6" { discard; }').discarded
    assert go(s + 'if currentdate :zone "+0000" "hour" "07" { discard; }').discarded
    assert go(s + 'if currentdate "julian" "61380" { discard; }').discarded


def test_subaddress_user_and_detail_rfc5233():
    s = 'require ["envelope", "subaddress"];\n'
    assert go(s + 'if envelope :user "to" "alice" { discard; }').discarded
    assert go(s + 'if envelope :detail "to" "tag" { discard; }').discarded
    assert go(s + 'if address :detail "cc" "x" { discard; }').discarded
    # No separator: :detail does not match, not even the empty string.
    assert not go(s + 'if address :detail "to" "" { discard; }').discarded


def test_envelope_null_sender_is_the_empty_string():
    assert go(
        'require "envelope";\nif envelope :all :is "from" "" { discard; }', mail_from=""
    ).discarded


def test_comparators_rfc4790():
    assert go('if header :is "x-spam-score" "7" { discard; }').discarded
    assert go('if header :contains "from" "BOB" { discard; }').discarded
    assert not go('if header :contains :comparator "i;octet" "from" "BOB" { discard; }').discarded


def test_numeric_comparator_cannot_do_contains_error_keeps_message():
    out = go(
        'require "comparator-i;ascii-numeric";\n'
        'if header :contains :comparator "i;ascii-numeric" "x" "1" { discard; }'
    )
    assert out.stores == [Store("INBOX")] and out.errors


def test_body_transforms_rfc5173():
    s = 'require "body";\n'
    assert go(s + 'if body :text :contains "hello world" { discard; }').discarded
    assert not go(s + 'if body :text :contains "aGVsbG8" { discard; }').discarded
    assert go(s + 'if body :raw :contains "aGVsbG8" { discard; }').discarded
    assert go(s + 'if body :content "text/html" :contains "html part" { discard; }').discarded
    assert not go(s + 'if body :content "text/html" :contains "hello" { discard; }').discarded


def test_set_modifiers_in_precedence_order_rfc5229_4():
    out = go(
        'require ["variables", "fileinto", "mailbox"];\n'
        'set :upperfirst :lower "a" "HELLO";\nset :length "n" "${a}";\n'
        'set :quotewildcard "q" "a*b?";\n'
        'if string :matches "a*b?" "${q}" { fileinto :create "${a}-${n}"; }'
    )
    assert folders(out) == ["Hello-5"]


def test_imap4flags_internal_and_variables_rfc5232():
    out = go(
        'require ["imap4flags", "variables", "fileinto"];\n'
        'setflag "f" "\\\\Seen $a";\naddflag "f" "$b";\nremoveflag "f" "$a";\n'
        'if hasflag "f" "$b" { setflag "\\\\Flagged"; }\n'
        'fileinto :flags "${f}" "Lists";\n'
    )
    by = {s.folder: set(s.flags) for s in out.stores}
    assert by == {"Lists": {"\\Seen", "$b"}}
    assert not out.errors


def test_implicit_keep_takes_the_internal_flags():
    out = go('require "imap4flags";\naddflag "\\\\Flagged";')
    assert out.stores == [Store("INBOX", ("\\Flagged",))]


def test_editheader_index_last_and_values_rfc5293():
    out = go(
        'require ["editheader", "index"];\n'
        'deleteheader :index 1 :last "x-tag";\ndeleteheader :index 1 "x-tag";\n'
        'deleteheader :contains "x-spam-score" "7";\n'
        'addheader :last "X-A" "1";\naddheader "X-B" "2";\n'
        'if exists "x-spam-score" { discard; }\n'
        'if header :is "x-b" "2" { keep; }\n'
    )
    assert not out.discarded
    msg = out.message
    assert msg.startswith(b"X-B: 2\r\n")
    assert msg.count(b"X-Tag:") == 1 and b"X-Tag: second" in msg
    assert b"X-Spam-Score" not in msg
    assert b"X-A: 1\r\n\r\n--b" in msg  # added last, before the blank line


def test_editheader_never_touches_received_rfc5293_6():
    out = go('require "editheader";\ndeleteheader "received";\naddheader "Received" "x";')
    assert out.message is None


def test_reject_with_fileinto_is_an_error_rfc5429_2():
    out = go('require ["reject", "fileinto"];\nfileinto "Lists";\nreject "no";')
    assert out.stores == [Store("INBOX")] and out.reject is None and out.errors


def test_reject_cancels_the_implicit_keep():
    out = go('require "reject";\nreject "go away";')
    assert out.reject.reason == "go away" and out.stores == []


def test_redirect_copy_and_duplicates_rfc5228_2_10_3():
    out = go('require "copy";\nredirect :copy "x@remote.test";\nredirect "X@remote.test";')
    assert [r.address for r in out.redirects] == ["x@remote.test"]
    assert out.stores == []  # the second (plain) redirect cancelled the keep


def test_fileinto_twice_is_one_copy():
    out = go('require "fileinto";\nfileinto "Lists";\nfileinto "Lists";\nkeep;\nkeep;')
    assert folders(out) == ["Lists", "INBOX"]


def test_specialuse_picks_the_folder_with_that_role_rfc8579():
    out = go('require ["fileinto", "special-use"];\nfileinto :specialuse "\\\\Junk" "Spam";')
    assert folders(out) == ["Junk"]
    assert go(
        'require "special-use";\nif specialuse_exists "Sent" "\\\\Sent" { discard; }'
    ).discarded
    assert not go(
        'require "special-use";\nif specialuse_exists "\\\\Archive" { discard; }'
    ).discarded


def test_duplicate_uses_the_seen_lookup_rfc7352():
    seen = {}
    out = go('require "duplicate";\nif duplicate { discard; }', seen=seen.get)
    assert not out.discarded
    ((key, period),) = out.duplicates
    assert "<m1@remote.test>" in key and period == 14 * 86400
    seen[key] = NOW.timestamp() - 60
    out = go('require "duplicate";\nif duplicate { discard; }', seen=seen.get)
    assert out.discarded and out.duplicates == []
    out = go('require "duplicate";\nif duplicate :seconds 30 { discard; }', seen=seen.get)
    assert not out.discarded
    out = go(
        'require "duplicate";\nif duplicate :uniqueid "other" :handle "h" { discard; }',
        seen=seen.get,
    )
    assert not out.discarded and out.duplicates[0][0] == "h\0other"


def test_vacation_reply_and_its_state_key_rfc5230():
    out = go(
        'require "vacation";\nvacation :days 2 :subject "Out" :from "alice@example.test" '
        ':addresses "carol@example.test" "Back soon.";'
    )
    reply = out.vacation
    assert reply.recipient == "bob@remote.test" and reply.period == 2 * 86400
    assert (
        b"Subject: Out\r\n" in reply.message and b"In-Reply-To: <m1@remote.test>" in reply.message
    )
    assert b"Auto-Submitted: auto-replied" in reply.message
    again = go(
        'require "vacation";\nvacation :days 5 :subject "Out" :from "alice@example.test" "Back soon.";'
    )
    assert again.vacation.key == reply.key  # :days and :addresses are not part of the handle
    other = go('require "vacation";\nvacation :handle "h" "Back soon.";')
    assert other.vacation.key != reply.key


def test_vacation_period_is_clamped_to_the_configured_minimum():
    limits = Limits(vacation_min_days=3)
    out = go('require ["vacation", "vacation-seconds"];\nvacation :seconds 10 "x";', limits=limits)
    assert out.vacation.period == 3 * 86400


def test_vacation_skips_mail_not_addressed_to_the_user():
    raw = RAW.replace(
        b"To: alice@example.test, carol@example.test\r\n", b"To: list@remote.test\r\n"
    )
    out = go('require "vacation";\nvacation "x";', raw=raw)
    assert out.vacation is None and out.vacation_skipped == "not addressed to the user"


def test_include_globals_and_return_rfc6609():
    inner = parse(
        'require ["include", "variables"];\nglobal "v";\nset "v" "set inside";\nreturn;\nset "v" "after return";'
    )
    outer = parse(
        'require ["include", "variables", "fileinto", "mailbox"];\nglobal "v";\ninclude "inner";\nfileinto :create "${v}";'
    )
    outer.included[("personal", "inner")] = inner
    out = run(outer, MessageInput(RAW, "bob@remote.test", "alice@example.test", now=NOW))
    assert folders(out) == ["set inside"]


def test_missing_include_is_a_runtime_error_unless_optional():
    out = go('require "include";\ninclude "gone";\ndiscard;')
    assert out.errors and out.stores == [Store("INBOX")]
    assert go('require "include";\ninclude :optional "gone";\ndiscard;').discarded


def test_step_budget_and_action_limit():
    out = go("if true {}\n" * 50, limits=Limits(max_steps=20))
    assert out.stores == [Store("INBOX")] and "too long" in out.errors[0]
    out = go(
        'require "fileinto";\n' + 'fileinto :copy "Lists";\n'.replace(":copy ", "") * 3,
        limits=Limits(max_actions=2),
    )
    assert "too many actions" in out.errors[0]


def test_variables_are_bounded():
    doubling = 'set "a" "${a}${a}";\n' * 20
    out = go(
        'require "variables";\nset "a" "xxxxxxxxxx";\n' + doubling + 'set :length "n" "${a}";\n'
        'if string :is "${n}" "64" { discard; }',
        limits=Limits(max_variable_size=64),
    )
    assert out.discarded


def test_regex_match_variables():
    out = go(
        'require ["regex", "variables", "fileinto", "mailbox"];\n'
        'if header :regex "from" "([a-z]+)@([a-z.]+)" { fileinto :create "${2}/${1}"; }'
    )
    assert folders(out) == ["remote.test/bob"]


@pytest.mark.parametrize("raw", [b"", b"no header at all", b"\r\n\r\n", b"Subject: x"])
def test_odd_messages_never_raise(raw):
    out = go(
        'require ["body", "editheader"];\nif body :contains "x" {}\naddheader "X" "y";\nif address "from" "a" {}',
        raw=raw,
    )
    assert not out.errors


def test_regex_time_is_linear_even_for_patterns_that_backtrack_elsewhere():
    """(a|aa)*c and (a+)+c take exponential time in a backtracking engine."""
    raw = b"Subject: " + b"a" * 6000 + b"\r\n\r\nbody\r\n"
    start = time.process_time()
    out = go(
        'require "regex";\n'
        'if header :regex "subject" ["(a|aa)*c", "(a+)+c", "^(a*)*$"] { discard; }',
        raw=raw,
    )
    assert out.discarded and not out.errors
    assert time.process_time() - start < 5


def test_wildcards_and_regexes_are_charged_by_their_work():
    raw = b"Subject: " + b"a" * 60000 + b"\r\n\r\n" + b"a" * 500000 + b"\r\n"
    star_key = "*a" * 300 + "b"
    for script in (
        f'if header :matches "subject" "{star_key}" {{ discard; }}',
        f'require "body";\nif body :matches "{star_key}" {{ discard; }}',
        'require ["body", "regex"];\n'
        + 'if body :regex "(a|b|c)*(a|aa)*[[:alpha:]]{5,100}x" { discard; }\n' * 40,
    ):
        start = time.process_time()
        out = go(script, raw=raw)
        assert out.stores == [Store("INBOX")]
        assert time.process_time() - start < 5


def _steps_needed(script: str) -> int:
    """The smallest step budget `script` runs in without running out."""
    for budget in range(1, 500):
        if not go(script, limits=Limits(max_steps=budget)).errors:
            return budget
    raise AssertionError("no budget was enough")


@pytest.mark.parametrize(
    ("test", "key"),
    [
        ('header :matches "subject" KEY', "* [*] *"),
        ('header :matches ["x-tag", "subject"] ["nothing", KEY]', "s*d"),
        ('header :matches :comparator "i;octet" "subject" KEY', "*[NEWS]*"),
        ('header :matches :comparator "i;octet" "subject" KEY', "*[news]*"),
        ('address :matches :domain "to" KEY', "*.test"),
        ('address :localpart :matches ["to", "cc"] KEY', "?a*"),
        ('envelope :matches :localpart "to" KEY', "alice+*"),
        ('allof (size :under 1M, header :matches "from" KEY)', "bob *"),
        ('anyof (header :is "x-tag" "none", not header :matches "subject" KEY)', "*weekly"),
        ('header :contains "x-tag" ["eco", KEY]', "hir"),
        ('address :is :domain ["from", "to"] KEY', "example.test"),
    ],
)
def test_compiled_tests_decide_charge_and_capture_as_the_general_path(test, key):
    """A test with constant arguments runs compiled; the same test with a key from a
    variable takes the general path: the same verdict, the same match variables, and the
    same steps (but the one that expanding the variable costs)."""
    s = f'require ["variables", "fileinto", "mailbox", "envelope"];\nset "k" "{key}";\n'
    tail = ' { fileinto :create "hit-${1}-${2}"; }\n'
    compiled = s + "if " + test.replace("KEY", f'"{key}"') + tail
    general = s + "if " + test.replace("KEY", '"${k}"') + tail
    fast, slow = go(compiled), go(general)
    assert not fast.errors and not slow.errors
    assert folders(fast) == folders(slow)
    assert _steps_needed(general) == _steps_needed(compiled) + 1


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kathmandu"])
def test_local_now_is_the_machines_zone(zone):
    """A delivery's "now" (RFC 5260's local zone) is what datetime.now().astimezone() says,
    in a child process whose TZ is `zone` (half- and quarter-hour offsets included)."""
    code = (
        "from datetime import datetime\n"
        "from mailsuite.sieve.dateparts import local_now\n"
        "a = local_now(); b = datetime.now().astimezone(); c = local_now()\n"
        "print(a.utcoffset() == b.utcoffset() == c.utcoffset(), a.tzname() == b.tzname(),"
        " a <= b <= c)\n"
    )
    env = {**os.environ, "TZ": zone}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "True"]


def test_filing_asks_for_one_folder_and_lists_them_only_for_special_use():
    asked: list[str] = []
    listed: list[bool] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name in ("Lists", "Spam")

    def listing() -> dict:
        listed.append(True)
        return {"Lists": None, "Spam": "\\Junk"}

    s = 'require ["fileinto", "mailbox", "special-use"];\n'
    out = go(s + 'if mailboxexists "Lists" { fileinto "Lists"; }', folders=listing, exists=exists)
    assert folders(out) == ["Lists"] and asked == ["Lists", "Lists"] and not listed
    out = go(s + 'fileinto "Nowhere";', folders=listing, exists=exists)
    assert folders(out) == ["INBOX"] and "does not exist" in out.errors[0] and not listed
    out = go(s + 'fileinto :specialuse "\\\\Junk" "Lists";', folders=listing, exists=exists)
    assert folders(out) == ["Spam"] and listed == [True]


def test_compiled_tests_see_editheader_changes_rfc5293_5():
    """Compiled tests keep what they fold per message; an edit of the fields drops it."""
    out = go(
        'require ["editheader", "fileinto", "mailbox"];\n'
        'if header :contains "x-tag" "sec" { fileinto :create "before"; }\n'
        'deleteheader "x-tag";\n'
        'addheader "X-Tag" "Later";\n'
        'if header :contains "x-tag" "sec" { fileinto :create "stale"; }\n'
        'if header :is "x-tag" "later" { fileinto :create "after"; }\n'
        'if address :is :domain "from" "remote.test" { fileinto :create "from-before"; }\n'
        'deleteheader "from";\n'
        'if address :is :domain "from" "remote.test" { fileinto :create "from-stale"; }\n'
    )
    assert folders(out) == ["before", "after", "from-before"]
