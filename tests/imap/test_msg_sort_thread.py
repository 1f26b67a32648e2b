"""mailsuite.imap.commands.sort and .thread: RFC 5256 base subject, SORT keys, ORDEREDSUBJECT, REFERENCES."""

from __future__ import annotations

import pytest

from mailsuite.imap.commands.sort import (
    base_subject,
    format_sort,
    parse_sort_command,
    sort_messages,
)
from mailsuite.imap.commands.thread import parse_thread_command, thread_messages, thread_response
from mailsuite.imap.parser import ImapBad, parse_line
from mailsuite.imap.search import SearchContext, evaluate_seqs
from mailsuite.message.content import MessageContent


class Msg:
    def __init__(self, uid, raw, internaldate=0.0):
        self.uid = uid
        self.raw = raw
        self.size = self.wire_size = len(raw)
        self.internaldate = internaldate
        self.modseq = 1
        self.flags = frozenset()


def loader(m):
    return MessageContent(m.raw)


def make(
    uid,
    subject=None,
    date=None,
    frm=None,
    to=None,
    cc=None,
    mid=None,
    refs=None,
    irt=None,
    internaldate=0.0,
    size=None,
):
    h = []
    for name, v in (
        ("Subject", subject),
        ("Date", date),
        ("From", frm),
        ("To", to),
        ("Cc", cc),
        ("Message-ID", mid),
        ("References", refs),
        ("In-Reply-To", irt),
    ):
        if v is not None:
            h.append(f"{name}: {v}")
    raw = ("\n".join(h) + "\n\nbody\n").encode()
    m = Msg(uid, raw, internaldate)
    if size is not None:
        m.wire_size = size
    return m


@pytest.mark.parametrize(
    "subject,base,reply",
    [
        ("Re: [dev] Fwd: hello (fwd)", "hello", True),
        ("[fwd: Re: test]", "test", True),
        ("[blob] ", "[blob]", False),
        ("[blob] real", "real", False),
        ("RE:  re:x", "x", True),
        ("Fw[x]: y", "y", True),
        ("=?utf-8?q?Re=3A_caf=C3=A9?=", "café", True),
        ("  spaced \t  out  ", "spaced out", False),
        ("Re: (fwd)", "", True),
        ("", "", False),
    ],
)
def test_base_subject_rfc5256_2_1(subject, base, reply):
    assert base_subject(subject.encode()) == (base, reply)


def test_base_subject_missing_header():
    assert base_subject(None) == ("", False)


def sort(text, msgs):
    cmd = parse_line(b"a SORT " + text.encode())
    criteria, prog = parse_sort_command(cmd.args)
    pairs = evaluate_seqs(prog, msgs, SearchContext(content_loader=loader))
    return [m.uid for _, m in sort_messages(criteria, pairs, loader)]


MSGS = [
    make(1, "Re: banana", "Mon, 1 Jan 2024 10:00:00 +0000", "Zed <zed@x>", "b@x", "c2@x", size=500),
    make(2, "apple", "Mon, 1 Jan 2024 09:00:00 -0300", "amy@x", "a@x", None, size=100),
    make(3, "Banana", None, "Bob <BOB@x>", "c@x", "c1@x", internaldate=1704100000.0, size=300),
    make(4, "[list] apple", "Mon, 1 Jan 2024 11:00:00 +0000", "amy@x", "a@x", "c2@x", size=100),
]


@pytest.mark.parametrize(
    "criteria,expected",
    [
        ("(ARRIVAL) UTF-8 ALL", [1, 2, 4, 3]),
        ("(SIZE) UTF-8 ALL", [2, 4, 3, 1]),
        ("(REVERSE SIZE) UTF-8 ALL", [1, 3, 2, 4]),  # ties keep mailbox order
        ("(SUBJECT) UTF-8 ALL", [2, 4, 1, 3]),
        ("(SUBJECT REVERSE DATE) UTF-8 ALL", [2, 4, 1, 3]),  # 2 is 12:00 UTC, 4 11:00
        # 2 is 12:00 UTC; 3 has no Date so its internal date (2024-01-01 09:06:40 UTC) counts
        ("(DATE) UTF-8 ALL", [3, 1, 4, 2]),
        ("(FROM) UTF-8 ALL", [2, 4, 3, 1]),  # by local part, case-insensitive
        ("(TO SUBJECT) UTF-8 ALL", [2, 4, 1, 3]),
        ("(CC) UTF-8 ALL", [2, 3, 1, 4]),  # missing Cc sorts first (empty string)
        ("(SUBJECT) UTF-8 FROM amy", [2, 4]),
    ],
)
def test_sort_keys(criteria, expected):
    assert sort(criteria, MSGS) == expected


@pytest.mark.parametrize(
    "text",
    [
        "() UTF-8 ALL",
        "(REVERSE) UTF-8 ALL",
        "(FOO) UTF-8 ALL",
        "DATE UTF-8 ALL",
        "(DATE) UTF-8",
        "(REVERSE REVERSE DATE) UTF-8 ALL",
    ],
)
def test_bad_sort_criteria(text):
    cmd = parse_line(b"a SORT " + text.encode())
    with pytest.raises(ImapBad):
        parse_sort_command(cmd.args)


def test_format_sort():
    assert format_sort([3, 1, 2]) == b"* SORT 3 1 2\r\n"
    assert format_sort([]) == b"* SORT\r\n"


THREAD_MSGS = [
    make(1, "hello", "1 Jan 2024 10:00:00 +0000", mid="<a@x>"),
    make(2, "Re: hello", "2 Jan 2024 10:00:00 +0000", mid="<b@x>", refs="<a@x>"),
    make(3, "Re: hello", "3 Jan 2024 10:00:00 +0000", mid="<c@x>", refs="<a@x> <b@x>"),
    make(4, "other", "4 Jan 2024 10:00:00 +0000", mid="<d@x>", refs="<zz@x>"),
    make(5, "Re: other", "5 Jan 2024 10:00:00 +0000", mid="<e@x>", refs="<zz@x>"),
    make(6, "solo", "6 Jan 2024 10:00:00 +0000", mid="<f@x>"),
    make(7, "Re: hello", "7 Jan 2024 10:00:00 +0000", mid="<g@x>"),
    make(8, "Re: solo", "8 Jan 2024 10:00:00 +0000", mid="<h@x>", irt="<f@x> <zz@x>"),
]


def thread(algorithm, msgs, uid=False):
    pairs = list(enumerate(msgs, 1))
    return thread_messages(algorithm, pairs, loader, uid)


def test_references_threads_by_references_and_subject():
    # 1 -> 2 -> 3 by References; 7 ("Re: hello", no references) joins 1 by subject;
    # 4 and 5 share the missing parent <zz@x>: a dummy root with two children;
    # 8 replies to 6 through In-Reply-To (its first message id only).
    assert thread("REFERENCES", THREAD_MSGS) == "(1 (2 3)(7))((4)(5))(6 8)"


def test_ordered_subject_groups_flat_under_first_message():
    # sorted by base subject then date; threads ordered by their first message's date
    assert thread("ORDEREDSUBJECT", THREAD_MSGS) == "(1 (2)(3)(7))(4 5)(6 8)"


def test_thread_numbers_are_uids_for_uid_thread():
    msgs = [make(10, "a", mid="<1@x>"), make(20, "Re: a", mid="<2@x>", refs="<1@x>")]
    assert thread("REFERENCES", msgs, uid=True) == "(10 20)"


def test_references_loops_and_duplicate_ids_do_not_hang():
    msgs = [
        make(1, "x", "1 Jan 2024 00:00:00 +0000", mid="<a@x>", refs="<b@x>"),
        make(2, "y", "2 Jan 2024 00:00:00 +0000", mid="<b@x>", refs="<a@x>"),
        make(3, "z", "3 Jan 2024 00:00:00 +0000", mid="<a@x>"),  # duplicate Message-ID
        make(4, "w", "4 Jan 2024 00:00:00 +0000"),  # no Message-ID
        make(5, "v", "5 Jan 2024 00:00:00 +0000", mid="<self@x>", refs="<self@x>"),
    ]
    out = thread("REFERENCES", msgs)
    for n in "12345":
        assert out.count(n) == 1
    assert out.startswith("(")


def test_thread_response_and_command_parsing():
    cmd = parse_line(b"a THREAD REFERENCES UTF-8 ALL")
    algorithm, prog = parse_thread_command(cmd.args)
    assert algorithm == "REFERENCES"
    assert thread_response("REFERENCES", [], loader, False) == b"* THREAD\r\n"
    with pytest.raises(ImapBad):
        parse_thread_command(parse_line(b"a THREAD FOO UTF-8 ALL").args)
    with pytest.raises(ImapBad):
        parse_thread_command(parse_line(b"a THREAD REFERENCES UTF-8").args)


def test_repeated_sort_criteria_are_dropped_and_change_nothing():
    # A key given again cannot reorder what the first one ordered; thousands of them (a
    # command line has room) made each comparison walk thousands of keys.
    repeated = " ".join(["TO", "REVERSE SIZE", "SUBJECT", "REVERSE TO"] * 2000)
    cmd = parse_line(f"a SORT ({repeated}) UTF-8 ALL".encode())
    criteria, _ = parse_sort_command(cmd.args)
    assert criteria == [("TO", False), ("SIZE", True), ("SUBJECT", False)]
    assert sort(f"({repeated}) UTF-8 ALL", MSGS) == sort("(TO REVERSE SIZE) UTF-8 ALL", MSGS)
