"""mailsuite.imap.search: RFC 3501 §6.4.4 keys, RFC 4731 ESEARCH, RFC 5182 `$`, RFC 7162 MODSEQ."""

from __future__ import annotations

import time

import pytest

from mailsuite.imap.parser import Atom, ImapBad, ImapNo, parse_line
from mailsuite.imap.search import (
    SearchContext,
    SearchOptions,
    evaluate,
    format_esearch,
    format_search,
    parse_search,
    parse_search_command,
    saved_result,
)
from mailsuite.message.content import MessageContent
from tests.imap import msg_fixtures as F


class Msg:
    def __init__(self, uid, raw, flags=(), day=(2023, 11, 13), modseq=1):
        self.uid = uid
        self.key = f"k{uid}"
        self.raw = raw
        self.size = len(raw)
        self.wire_size = len(raw) + raw.count(b"\n")
        self.flags = frozenset(flags)
        self.internaldate = time.mktime((*day, 12, 0, 0, 0, 0, -1))
        self.modseq = modseq


QP = b"""From: qp@example.test
Subject: =?ISO-8859-1?Q?Gr=FC=DFe?= from Cologne
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

K=F6ln is lovely; ZEBRA=
corn spotted
"""

MESSAGES = [
    Msg(2, F.SIMPLE, {"\\Seen"}, (2023, 11, 13), modseq=5),
    Msg(4, F.NESTED, {"\\Seen", "\\Flagged", "$Important"}, (2023, 11, 14), modseq=9),
    Msg(5, F.BASE64_TEXT, {"\\Answered"}, (2023, 11, 15), modseq=2),
    Msg(9, QP, {"\\Deleted", "\\Draft"}, (2023, 11, 16), modseq=7),
    Msg(12, F.NO_MIME, (), (2023, 11, 17), modseq=3),
]


def run(criteria: bytes, recent=(12,), saved=(4, 9), loader_ok=True):
    cmd = parse_line(b"a SEARCH " + criteria)
    opts, prog = parse_search_command(cmd.args)
    loads = []

    def loader(m):
        if not loader_ok:
            raise AssertionError("message content read for an index-only search")
        loads.append(m.uid)
        return MessageContent(m.raw)

    ctx = SearchContext(content_loader=loader, recent_uids=set(recent), saved_uids=list(saved))
    return [m.uid for m in evaluate(prog, MESSAGES, ctx)]


@pytest.mark.parametrize(
    "criteria,expected",
    [
        (b"ALL", [2, 4, 5, 9, 12]),
        (b"SEEN", [2, 4]),
        (b"UNSEEN", [5, 9, 12]),
        (b"ANSWERED", [5]),
        (b"UNANSWERED", [2, 4, 9, 12]),
        (b"DELETED", [9]),
        (b"UNDELETED", [2, 4, 5, 12]),
        (b"DRAFT", [9]),
        (b"UNDRAFT", [2, 4, 5, 12]),
        (b"FLAGGED", [4]),
        (b"UNFLAGGED", [2, 5, 9, 12]),
        (b"KEYWORD $important", [4]),
        (b"UNKEYWORD $Important", [2, 5, 9, 12]),
        (b"RECENT", [12]),
        (b"NEW", [12]),
        (b"OLD", [2, 4, 5, 9]),
        (b"1:2", [2, 4]),
        (b"4:*", [9, 12]),
        (b"*", [12]),
        (b"2,4", [4, 9]),
        (b"UID 4:9", [4, 5, 9]),
        (b"UID 10:*", [12]),
        (b"UID 13:*", [12]),  # RFC 3501 §6.4.8: "*" is the highest UID, so 13:* = 12:13
        (b"$", [4, 9]),
        (b"UID $", [4, 9]),
        (b"BEFORE 15-Nov-2023", [2, 4]),
        (b"ON 15-Nov-2023", [5]),
        (b'SINCE "15-Nov-2023"', [5, 9, 12]),
        (b"MODSEQ 7", [4, 9]),
        (b'MODSEQ "/flags/\\\\Seen" all 6', [4, 9]),
        (b"NOT SEEN", [5, 9, 12]),
        (b"OR SEEN DELETED", [2, 4, 9]),
        (b"OR (SEEN FLAGGED) (DRAFT DELETED)", [4, 9]),
        (b"NOT (OR SEEN RECENT)", [5, 9]),
        (b"SEEN UNFLAGGED", [2]),
        (b"OR OR SEEN RECENT ANSWERED", [2, 4, 5, 12]),
        (b"((((SEEN))))", [2, 4]),
    ],
)
def test_index_only_keys_never_read_messages(criteria, expected):
    assert run(criteria, loader_ok=False) == expected


@pytest.mark.parametrize(
    "criteria,expected",
    [
        (b"LARGER 1000", [4]),
        (b"SMALLER 100", [12]),
    ],
)
def test_size_keys_use_rfc822_size(criteria, expected):
    assert run(criteria, loader_ok=False) == expected


@pytest.mark.parametrize(
    "criteria,expected",
    [
        (b"FROM alice", [2]),
        (b"FROM ALICE@EXAMPLE", [2]),
        (b'FROM "doe, john"', [4]),
        (b"TO bob", [2, 4]),
        (b"CC j\xc3\xbcrgen", [4]),  # RFC 2047 decoded before matching
        (b"CC J\xc3\x9cRGEN", [4]),  # ... and case-insensitive beyond ASCII
        (b"SUBJECT hello", [2]),
        (b'SUBJECT "\xc3\xa9\xc3\xa9 NESTED"', [4]),
        (b"SUBJECT gr\xc3\xbc\xc3\x9fe", [9]),
        (b"BCC x", []),
        (b'HEADER Message-ID "simple.1"', [2]),
        (b'HEADER content-type ""', [4, 5, 9]),  # empty string: the field exists
        (b"HEADER X-Missing x", []),
        (b"SENTON 14-Nov-2023", [4]),
        # no Date: compared as the epoch, as Dovecot does
        (b"SENTBEFORE 14-Nov-2023", [2, 5, 9, 12]),
        (b"SENTSINCE 14-Nov-2023", [4]),
    ],
)
def test_header_keys(criteria, expected):
    assert run(criteria) == expected


@pytest.mark.parametrize(
    "criteria,expected",
    [
        (b"BODY zebracorn", [4, 5, 9]),  # inner rfc822 body, base64 Latin-1, soft-broken QP
        (b"BODY ZEBRACORN", [4, 5, 9]),
        (b"BODY k\xc3\xb6ln", [9]),  # QP Latin-1 decoded to text, then matched as UTF-8
        (b"BODY K\xc3\x96LN", [9]),
        (b"BODY caf\xc3\xa9", [4]),  # QP UTF-8 part of a multipart/alternative
        (b"BODY Hello", [5]),  # base64 body; the Subject "Hello there" of 2 is not body
        (b"TEXT hello", [2, 5]),  # TEXT includes the header
        (b"BODY boundary", []),  # MIME headers of parts are not body text
        (b"TEXT boundary", [4]),
        (b"BODY three", [12]),
        (b"BODY JVBERi0x", []),  # binary attachments are not searched as text
        (b'BODY ""', [2, 4, 5, 9, 12]),
        (b"CHARSET UTF-8 BODY gr\xc3\xbc\xc3\x9fe", [5]),
        (b"CHARSET US-ASCII BODY lait", [4]),
        (b"OR BODY three FROM alice", [2, 12]),
    ],
)
def test_body_and_text_keys_decode_before_matching(criteria, expected):
    assert run(criteria) == expected


def test_cheap_keys_short_circuit_before_reading_files():
    # SEEN is tested first, so only the two \Seen messages are ever loaded
    cmd = parse_line(b"a SEARCH BODY zebracorn SEEN")
    _, prog = parse_search_command(cmd.args)
    loaded = []

    def loader(m):
        loaded.append(m.uid)
        return MessageContent(m.raw)

    hits = evaluate(prog, MESSAGES, SearchContext(content_loader=loader))
    assert [m.uid for m in hits] == [4]
    assert loaded == [2, 4]
    assert prog.needs_content and prog.needs_body


@pytest.mark.parametrize(
    "criteria",
    [
        b"FOO",
        b"FROM",
        b"OR SEEN",
        b"NOT",
        b"BEFORE 32-Foo-2023",
        b"BEFORE 1-Jan-23",
        b"LARGER x",
        b"LARGER",
        b"UID 0",
        b"UID x",
        b"1:0",
        b"()",
        b"MODSEQ x",
        b"MODSEQ /flags/x bogus 5",
        b"CHARSET",
    ],
)
def test_malformed_criteria_are_bad(criteria):
    cmd = parse_line(b"a SEARCH " + criteria)
    with pytest.raises(ImapBad):
        parse_search_command(cmd.args)


def test_empty_criteria_is_bad():
    with pytest.raises(ImapBad):
        parse_search([])


def test_other_charsets_decode_the_search_string():
    # "grüße" in ISO-8859-1
    assert run(b'CHARSET ISO-8859-1 BODY "gr\xfc\xdfe"') == [5]


def test_unknown_charset_is_no_badcharset():
    cmd = parse_line(b"a SEARCH CHARSET X-NO-SUCH-CHARSET TEXT x")
    with pytest.raises(ImapNo) as exc:
        parse_search_command(cmd.args)
    assert exc.value.code == "BADCHARSET (UTF-8 US-ASCII)"


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(ImapBad):
        parse_search([Atom("NOT")] * 5000 + [Atom("SEEN")])


def test_return_options_and_esearch_format():
    cmd = parse_line(b"a SEARCH RETURN (MIN MAX COUNT ALL) SEEN")
    opts, prog = parse_search_command(cmd.args)
    assert opts.esearch and opts.min and opts.max and opts.count and opts.all
    line = format_esearch("A282", True, [2, 10, 11, 12, 20], opts)
    assert line == b'* ESEARCH (TAG "A282") UID MIN 2 MAX 20 COUNT 5 ALL 2,10:12,20\r\n'
    # RFC 4731 §3.1: no match -> only COUNT 0
    assert format_esearch("t", False, [], opts) == b'* ESEARCH (TAG "t") COUNT 0\r\n'
    cmd = parse_line(b"a SEARCH RETURN () SEEN")
    opts, _ = parse_search_command(cmd.args)
    assert opts.all and format_esearch("t", False, [1, 2], opts) == (
        b'* ESEARCH (TAG "t") ALL 1:2\r\n'
    )


def test_searchres_save_alone_sends_nothing_and_min_max_save_keeps_those():
    save = SearchOptions(esearch=True, save=True)
    assert format_esearch("t", True, [1, 2], save) is None
    assert saved_result(save, [5, 3, 9]) == [3, 5, 9]
    minmax = SearchOptions(esearch=True, save=True, min=True, max=True)
    assert saved_result(minmax, [5, 3, 9]) == [3, 9]


def test_search_response_with_modseq():
    assert format_search([1, 5], 917162500) == b"* SEARCH 1 5 (MODSEQ 917162500)\r\n"
    assert format_search([]) == b"* SEARCH\r\n"
    cmd = parse_line(b"a SEARCH MODSEQ 5")
    _, prog = parse_search_command(cmd.args)
    assert prog.wants_modseq and not prog.needs_content


def test_bad_return_option():
    cmd = parse_line(b"a SEARCH RETURN (BOGUS) ALL")
    with pytest.raises(ImapBad):
        parse_search_command(cmd.args)


def test_matching_is_caseless_and_decomposed_like_dovecot():
    # i;unicode-casemap style (RFC 5051): "jose" finds "José" in an encoded word and in an
    # 8-bit body; "josé" does not find plain "jose"
    raw = "From: =?UTF-8?B?Sm9zw6kgw4FsdmFyZXo=?= <j@x>\nSubject: s\n\nHola José\n".encode()
    plain = b"From: jose@x\nSubject: s\n\nhola jose\n"
    msgs = [Msg(1, raw), Msg(2, plain)]

    def search(criteria: bytes) -> list[int]:
        _, prog = parse_search_command(parse_line(b"a SEARCH CHARSET UTF-8 " + criteria).args)
        ctx = SearchContext(content_loader=lambda m: MessageContent(m.raw))
        return [m.uid for m in evaluate(prog, msgs, ctx)]

    assert search(b"FROM jose") == [1, 2]
    assert search(b"BODY JOSE") == [1, 2]
    assert search(b'FROM "\xc3\x81lvarez"') == [1]
    assert search(b'BODY "jos\xc3\xa9"') == [1]
