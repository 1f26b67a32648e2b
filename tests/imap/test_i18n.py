"""I18NLEVEL=1 (RFC 5255 §4.2, §4.3) over a real socket: SEARCH, SORT and THREAD compare with
i;unicode-casemap (RFC 5051) after RFC 2047 encoded words are decoded.

Each expectation follows from RFC 5051 §2 (simple titlecase mapping, then the decomposition
mapping, both again on what a decomposition yields; then octets compared) and from RFC 5256
§2.1 (base subject).  Dovecot 2.3 (which advertises I18NLEVEL=1) answers the same for all of
these but the ligature and ǆ cases, where it leaves the characters of a many-character
decomposition un-titlecased; RFC 5051 maps them again.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.imap.commands.sort import parse_sort_command, sort_messages
from mailsuite.imap.parser import Atom, parse_line
from mailsuite.imap.search import SearchContext, evaluate_seqs, parse_search
from mailsuite.message.casemap import casemap
from mailsuite.message.content import MessageContent
from mailsuite.message.text import part_text
from tests.imap.conftest import Raw, connect

# (subject as sent, display name of From as sent, From local part)
MESSAGES = [
    ("Straße", "Zoë", "zoe"),  # 1
    ("STRASSE", "=?utf-8?q?=C3=89mile?=", "emile"),  # 2
    ("=?iso-8859-1?q?Stra=DFe?=", "=?utf-8?b?zqPOv8+GzrnOsQ==?=", "sofia"),  # 3: Straße; Σοφια
    ("ıstanbul", "ada", "ada"),  # 4 dotless i
    ("Istanbul", "Ömer", "\u00f6mer"),  # 5 (UTF-8 local part, RFC 6532)
    ("İstanbul", "eve", "Eve"),  # 6 capital I with dot above
    ("σοφος", "bob", "bob"),  # 7 final sigma
    ("ΣΟΦΟΣ", "Bob", "bob2"),  # 8
    ("ﬁsh", "ﬁona", "fiona"),  # 9 ligature
    ("FISH", "Fiona", "fiona2"),  # 10
    ("Ａｂｃ", "zed", "zed"),  # 11 fullwidth
    ("abc", "Zed", "zed2"),  # 12
    ("cafe\u0301", "cara", "cara"),  # 13 combining acute
    ("=?utf-8?q?Re=3A_CAF=C3=89?=", "Cara", "cara2"),  # 14 encoded reply: CAFÉ
    ("cafe", "carl", "carl"),  # 15
    ("[list] Fwd: café", "_x", "x"),  # 16 base subject café
]


def _raw_message(i: int, subject: str, name: str, local: str) -> bytes:
    return (
        f"From: {name} <{local}@example.test>\r\n"
        f"To: alice@example.test\r\n"
        f"Subject: {subject}\r\n"
        f"Date: Mon, 7 Feb 1994 21:{i:02d}:00 +0000\r\n"
        f"Message-ID: <i18n{i}@example.test>\r\n\r\n"
        f"body {i}\r\n"
    ).encode()


@pytest.fixture
def mailbox(imap_server):
    c = connect(imap_server)
    for i, (subject, name, local) in enumerate(MESSAGES, 1):
        typ, _ = c.append("INBOX", None, None, _raw_message(i, subject, name, local))
        assert typ == "OK"
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    yield r
    r.close()


def _numbers(line: bytes, word: bytes) -> list[int]:
    assert line.startswith(b"* " + word), line
    return [int(n) for n in line.split()[2:]]


def search(r: Raw, key: str, needle: str) -> list[int]:
    """SEARCH CHARSET UTF-8 <key> <needle as a literal> (non-synchronizing, LITERAL+)."""
    data = needle.encode()
    out = r.cmd(b"SEARCH CHARSET UTF-8 " + key.encode() + b" {%d+}\r\n" % len(data) + data)
    assert out[-1].startswith(b"t OK"), out
    return _numbers(out[0], b"SEARCH")


def sort(r: Raw, criteria: bytes) -> list[int]:
    out = r.cmd(b"SORT (" + criteria + b") UTF-8 ALL")
    assert out[-1].startswith(b"t OK"), out
    return _numbers(out[0], b"SORT")


def test_capability_advertises_i18nlevel_1_rfc5255(imap_server):
    r = Raw(imap_server.port("imap"))
    caps = r.cmd(b"CAPABILITY")[0].split()
    assert b"I18NLEVEL=1" in caps
    r.close()


def test_search_sharp_s_has_no_simple_titlecase_rfc5051(mailbox):
    # ß maps to itself (its titlecase "Ss" is two characters): STRASSE is another word.
    assert search(mailbox, "SUBJECT", "strAßE") == [1, 3]
    assert search(mailbox, "SUBJECT", "strasse") == [2]
    assert search(mailbox, "SUBJECT", "ß") == [1, 3]


def test_search_turkish_i_rfc5051(mailbox):
    # ı titlecases to I; İ has no titlecase and decomposes to I + U+0307.
    assert search(mailbox, "SUBJECT", "istanbul") == [4, 5]
    assert search(mailbox, "SUBJECT", "ıSTANBUL") == [4, 5]
    assert search(mailbox, "SUBJECT", "i\u0307stanbul") == [6]
    assert search(mailbox, "SUBJECT", "İSTANBUL") == [6]
    assert search(mailbox, "SUBJECT", "stanbul") == [4, 5, 6]


def test_search_greek_final_sigma_rfc5051(mailbox):
    assert search(mailbox, "SUBJECT", "σοφοσ") == [7, 8]
    assert search(mailbox, "SUBJECT", "ΣΟΦΟς") == [7, 8]
    # an encoded-word display name is decoded before it is compared
    assert search(mailbox, "FROM", "σοφια") == [3]


def test_search_ligature_and_fullwidth_rfc5051(mailbox):
    # ﬁ decomposes (compatibility) to f i, each then titlecased; fullwidth letters likewise.
    assert search(mailbox, "SUBJECT", "fish") == [9, 10]
    assert search(mailbox, "SUBJECT", "ﬁ") == [9, 10]
    assert search(mailbox, "SUBJECT", "ABC") == [11, 12]
    assert search(mailbox, "SUBJECT", "ａｂｃ") == [11, 12]
    assert search(mailbox, "FROM", "FIONA") == [9, 10]


def test_search_combining_accents_rfc5051(mailbox):
    # é and e + U+0301 have one form; "cafe" is a prefix of it, "café" is not in "cafe".
    assert search(mailbox, "SUBJECT", "café") == [13, 14, 16]
    assert search(mailbox, "SUBJECT", "CAFE\u0301") == [13, 14, 16]
    assert search(mailbox, "SUBJECT", "cafe") == [13, 14, 15, 16]
    assert search(mailbox, "FROM", "émile") == [2]
    assert search(mailbox, "FROM", "zoe") == [1]  # the address zoe@, and Zoë's prefix
    assert search(mailbox, "FROM", "zoë") == [1]
    assert search(mailbox, "TEXT", "ÖMER") == [5]


def test_sort_subject_orders_base_subjects_by_casemap_rfc5255(mailbox):
    # Base subjects (RFC 5256 §2.1) in i;unicode-casemap form, compared by code point:
    #  ABC 11 12 | CAFE 15 | CAFE+U+0301 13 14 16 (Re: and [list] Fwd: removed) | FISH 9 10 |
    #  ISTANBUL 4 5 | I+U+0307+STANBUL 6 (U+0307 > S) | STRASSE 2 | STRAßE 1 3 | ΣΟΦΟΣ 7 8
    # Ties keep sequence order, also under REVERSE.
    assert sort(mailbox, b"SUBJECT") == [11, 12, 15, 13, 14, 16, 9, 10, 4, 5, 6, 2, 1, 3, 7, 8]
    assert sort(mailbox, b"REVERSE SUBJECT") == [
        7,
        8,
        1,
        3,
        2,
        6,
        4,
        5,
        9,
        10,
        13,
        14,
        16,
        15,
        11,
        12,
    ]


def test_sort_display_from_decodes_and_casemaps_rfc5957(mailbox):
    # Display names, decoded and case-mapped: ADA 4 | BOB 7 8 | CARA 13 14 | CARL 15 | EVE 6 |
    # E+U+0301+MILE 2 (U+0301 > V) | FIONA 9 10 (the ligature too) | O+U+0308+MER 5 | ZED 11 12 |
    # ZOE+U+0308 1 | _X 16 ("_" is after A-Z: titlecase forms, not lower case) | ΣΟΦΙΑ 3
    order = sort(mailbox, b"DISPLAYFROM")
    assert order == [4, 7, 8, 13, 14, 15, 6, 2, 9, 10, 5, 11, 12, 1, 16, 3]


def test_sort_from_compares_utf8_local_parts_rfc5255(mailbox):
    # addr-mailbox forms: ADA 4 | BOB 7 | BOB2 8 | CARA 13 | CARA2 14 | CARL 15 | EMILE 2 |
    # EVE 6 | FIONA 9 | FIONA2 10 | O+U+0308+MER 5 | SOFIA 3 | X 16 | ZED 11 | ZED2 12 | ZOE 1
    order = sort(mailbox, b"FROM")
    assert order == [4, 7, 8, 13, 14, 15, 2, 6, 9, 10, 5, 3, 16, 11, 12, 1]


def test_thread_orderedsubject_groups_by_casemap_rfc5256(mailbox):
    out = mailbox.cmd(b"THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert out[-1].startswith(b"t OK"), out
    # groups by base subject form, each under its earliest sent message, threads in order
    # of their first message's date (the Date minutes are the sequence numbers)
    assert out[0] == b"* THREAD (1 3)(2)(4 5)(6)(7 8)(9 10)(11 12)(13 (14)(16))(15)"


def test_base_subject_prefixes_are_compared_with_the_comparator_rfc5255(imap_server):
    """RFC 5256 §2.1 under i;unicode-casemap: fullwidth "Ｒｅ:", "ＲＥ：", "［list］", "（ｆｗｄ）"
    and "Ｆｗｄ:" are the ASCII ones once mapped, so all these have the base subject HELLO
    (Dovecot 2.3 answers these same SORT and THREAD lines)."""
    subjects = ["hello", "Ｒｅ: hello", "ＲＥ： hello", "［list］ hello", "hello （ｆｗｄ）"]
    subjects += ["=?utf-8?b?77ym772X772EOiBoZWxsbw==?=", "zzz"]  # Ｆｗｄ: hello, encoded
    c = connect(imap_server)
    for i, subject in enumerate(subjects, 1):
        raw = _raw_message(i, subject, "x", "x")
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert sort(r, b"REVERSE SUBJECT") == [7, 1, 2, 3, 4, 5, 6]
    out = r.cmd(b"THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert out[0] == b"* THREAD (1 (2)(3)(4)(5)(6))(7)", out
    r.close()


# --- the comparator's consistency in SORT ------------------------------------------------------

TRICKY = "aAbBzZ _éÉeE\u0301\u0327ßẞsSſıiIİσςΣﬁfFＡａΩΩKkǆǅǄ대한0123"


class _Msg:
    def __init__(self, uid: int, subject: str):
        self.uid = uid
        self.raw = ("Subject: " + subject + "\n\nbody\n").encode()
        self.size = self.wire_size = len(self.raw)
        self.internaldate = 0.0
        self.modseq = 1
        self.flags = frozenset()


def _sorted_seqs(criteria: bytes, msgs: list[_Msg]) -> list[int]:
    crit, _ = parse_sort_command(parse_line(b"a SORT (" + criteria + b") UTF-8 ALL").args)
    pairs = list(enumerate(msgs, 1))
    return [seq for seq, _ in sort_messages(crit, pairs, lambda m: MessageContent(m.raw))]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=TRICKY, max_size=6), max_size=12))
def test_sort_subject_groups_equal_forms_in_sequence_order(subjects):
    """RFC 5256 §3 with i;unicode-casemap: ordered by form; equal forms together, in sequence
    order, under REVERSE too."""
    msgs = [_Msg(i, s) for i, s in enumerate(subjects, 1)]
    form = {i: casemap(" ".join(s.split())) for i, s in enumerate(subjects, 1)}
    order = _sorted_seqs(b"SUBJECT", msgs)
    assert sorted(order) == list(range(1, len(msgs) + 1))
    keys = [form[s] for s in order]
    assert keys == sorted(keys)
    for x, y in zip(order, order[1:], strict=False):
        if form[x] == form[y]:
            assert x < y
    reverse = _sorted_seqs(b"REVERSE SUBJECT", msgs)
    assert [form[s] for s in reverse] == sorted(keys, reverse=True)
    for x, y in zip(reverse, reverse[1:], strict=False):
        if form[x] == form[y]:
            assert x < y


# --- SEARCH's byte fast path agrees with the comparator ------------------------------------------

_WORDS = st.text(alphabet="abcxyzABCXYZ éÉeE\u0301ßsSıiIİσςΣﬁfＡａK", min_size=0, max_size=8)


class _Stored:
    def __init__(self, uid: int, raw: bytes):
        self.uid = uid
        self.raw = raw
        self.size = self.wire_size = len(raw)
        self.internaldate = 0.0
        self.modseq = 1
        self.flags = frozenset()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_WORDS, min_size=1, max_size=4),
    _WORDS,
    st.sampled_from(["BODY", "TEXT"]),
    st.sampled_from(["utf-8", "iso-8859-7"]),
)
def test_search_body_matches_the_casemap_of_the_decoded_text(bodies, needle, key, charset):
    """BODY/TEXT answer (fast byte scan or decoding) is exactly: the needle's form is in the
    form of the decoded text (RFC 5255 §4.2, RFC 5051 substring)."""
    msgs, texts = [], []
    for i, body in enumerate(bodies, 1):
        try:
            data = body.encode(charset)
        except UnicodeEncodeError:
            data = body.encode("utf-8")
            charset = "utf-8"
        raw = (
            (b"Subject: s\r\nContent-Type: text/plain; charset=" + charset.encode() + b"\r\n\r\n")
            + data
            + b"\r\n"
        )
        msgs.append(_Stored(i, raw))
        content = MessageContent(raw)
        text = part_text(content.wire(), content.tree())
        if key == "TEXT":
            text = "Subject: s\nContent-Type: text/plain; charset=" + charset + "\n" + text
        texts.append(casemap(text))
    form = casemap(needle)
    expected = [i for i, t in enumerate(texts, 1) if form in t]
    prog = parse_search([Atom(key), needle.encode()], charset="UTF-8")
    ctx = SearchContext(content_loader=lambda m: MessageContent(m.raw))
    assert [seq for seq, _ in evaluate_seqs(prog, msgs, ctx)] == expected
