"""FETCH / SEARCH / SORT / THREAD content behaviour over real sockets (imaplib, imapclient, raw).

The pure modules are tested in the other test_msg_* files; these pin that the server wires
them up: MIME sections, BODYSTRUCTURE as clients parse it, decoded SEARCH, SORT and THREAD
responses, and the parsed cache answering a second client.
"""

from __future__ import annotations

import imaplib
import re

import pytest
from imapclient import IMAPClient

from mailsuite.message.content import MessageContent
from mailsuite.store.parsed_cache import CACHE_NAME
from tests.conftest import DEFAULT_PASSWORD
from tests.imap import msg_fixtures as F
from tests.imap.conftest import USER, Raw, connect


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r\n")


@pytest.fixture
def loaded(imap_server):
    """INBOX with SIMPLE, NESTED, BASE64_TEXT, BINARY_NUL (uids 1..4)."""
    c = connect(imap_server)
    for raw in (F.SIMPLE, F.NESTED, F.BASE64_TEXT, F.BINARY_NUL):
        typ, _ = c.append("INBOX", None, None, crlf(raw))
        assert typ == "OK"
    c.select("INBOX")
    yield c
    try:
        c.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def fetch_one(c, seq: str, item: str) -> bytes:
    typ, data = c.fetch(seq, f"({item})")
    assert typ == "OK", data
    return data[0][1]


def test_fetch_sections_of_nested_mime_over_the_wire(loaded):
    wire = MessageContent(F.NESTED).wire()
    assert fetch_one(loaded, "2", "BODY.PEEK[]") == wire
    assert fetch_one(loaded, "2", "BODY.PEEK[1.1]") == b"Caf=C3=A9 au lait"
    assert fetch_one(loaded, "2", "BODY.PEEK[2.HEADER]").startswith(b"From: Carol <carol@")
    assert fetch_one(loaded, "2", "BODY.PEEK[2.1]") == (
        b"inner body line 1\r\ninner body zebracorn"
    )
    assert fetch_one(loaded, "2", "BODY.PEEK[3.MIME]").startswith(b"Content-Type: application/pdf")
    assert fetch_one(loaded, "2", "BODY.PEEK[TEXT]<0.21>") == b"This is the preamble."


def test_header_fields_the_way_mbsync_and_k9_ask(loaded):
    typ, data = loaded.uid(
        "FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT X-TUID)])"
    )
    assert typ == "OK"
    first = data[0]
    assert b"BODY[HEADER.FIELDS (FROM SUBJECT X-TUID)]" in first[0]
    assert first[1] == (b"From: Alice Example <alice@example.test>\r\nSubject: Hello there\r\n\r\n")
    # PEEK leaves \Seen alone
    typ, data = loaded.fetch("1:*", "(FLAGS)")
    assert not any(b"\\Seen" in d for d in data)


def test_body_fetch_sets_seen_and_reports_flags(loaded):
    typ, data = loaded.fetch("1", "(BODY[TEXT])")
    assert typ == "OK"
    assert b"FLAGS (\\Seen" in data[0][0] + data[-1]
    typ, data = loaded.fetch("1", "(FLAGS)")
    assert b"\\Seen" in data[0]


def test_bodystructure_parses_in_imapclient(imap_server, loaded):
    with IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=10) as c:
        c.login(USER, DEFAULT_PASSWORD)
        c.select_folder("INBOX", readonly=True)
        res = c.fetch([2], ["BODYSTRUCTURE", "ENVELOPE", "RFC822.SIZE"])
        uid = next(iter(res))
        bs = res[uid][b"BODYSTRUCTURE"]
        assert bs.is_multipart
        parts, subtype = bs[0], bs[1]
        assert subtype == b"mixed"
        assert parts[0][1] == b"alternative"
        assert parts[1][0] == b"message" and parts[1][1] == b"rfc822"
        assert parts[2][0] == b"application" and parts[2][1] == b"pdf"
        env = res[uid][b"ENVELOPE"]
        assert env.message_id == b"<nested.1@example.com>"
        assert env.from_[0].mailbox == b"john" and env.from_[0].host == b"example.com"
        assert res[uid][b"RFC822.SIZE"] == len(MessageContent(F.NESTED).wire())


def test_binary_extension_decodes_parts(loaded):
    typ, data = loaded.fetch("3", "(BINARY.PEEK[1] BINARY.SIZE[1])")
    assert typ == "OK"
    text = "Hello Zebracorn and Grüße".encode("latin-1")
    assert data[0][1] == text
    assert b"BINARY.SIZE[1] %d" % len(text) in data[-1] + data[0][0]


def test_binary_unknown_encoding_is_no_unknown_cte(imap_server, loaded):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX", b"s")
    out = r.cmd(b"FETCH 4 (BINARY.PEEK[2])", b"b")
    assert out[-1].startswith(b"b NO [UNKNOWN-CTE]"), out
    out = r.cmd(b"FETCH 4 (BINARY.PEEK[1])", b"c")
    assert out[0].startswith(b"* 4 FETCH (BINARY[1] ~{4}"), out
    r.close()


@pytest.mark.parametrize(
    "criteria,expected",
    [
        ('TEXT "zebracorn"', [2, 3]),
        ('BODY "grüße"', [3]),
        ('SUBJECT "éé nested"', [2]),
        ("OR FROM alice (LARGER 1000 NOT SMALLER 10)", [1, 2]),
        ('HEADER Message-ID "simple.1"', [1]),
        ("NOT (OR 1 2:3)", [4]),
    ],
)
def test_search_decodes_and_matches_case_insensitively(loaded, criteria, expected):
    typ, data = loaded.search("UTF-8", criteria.encode())
    assert typ == "OK", data
    assert [int(x) for x in data[0].split()] == expected


def test_esearch_and_searchres_over_the_wire(imap_server, loaded):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX", b"s")
    out = r.cmd(b"UID SEARCH RETURN (MIN MAX COUNT ALL) TEXT zebracorn", b"e")
    assert out[0] == b'* ESEARCH (TAG "e") UID MIN 2 MAX 3 COUNT 2 ALL 2:3', out
    out = r.cmd(b"SEARCH RETURN (SAVE) BODY zebracorn", b"f")
    assert out[-1].startswith(b"f OK") and not any(x.startswith(b"* ") for x in out[:-1])
    out = r.cmd(b"UID FETCH $ (UID)", b"g")
    assert [re.search(rb"UID (\d+)", x).group(1) for x in out[:-1]] == [b"2", b"3"]
    r.close()


def test_sort_and_thread_responses(imap_server):
    c = connect(imap_server)
    msgs = [
        b"Subject: hello\r\nDate: 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <a@x>\r\nFrom: b@x\r\n\r\n1\r\n",
        b"Subject: Re: hello\r\nDate: 2 Jan 2024 10:00:00 +0000\r\nMessage-ID: <b@x>\r\n"
        b"References: <a@x>\r\nFrom: a@x\r\n\r\n2\r\n",
        b"Subject: apple\r\nDate: 3 Jan 2024 10:00:00 +0000\r\nMessage-ID: <c@x>\r\nFrom: c@x\r\n\r\n3\r\n",
    ]
    for m in msgs:
        assert c.append("INBOX", None, None, m)[0] == "OK"
    c.select("INBOX")
    typ, data = c.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK" and data[0] == b"3 1 2"
    typ, data = c.sort("(REVERSE DATE)", "UTF-8", "ALL")
    assert data[0] == b"3 2 1"
    typ, data = c.uid("SORT", "(FROM)", "UTF-8", "ALL")
    assert data[0] == b"2 1 3"
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK" and data[0] == b"(1 2)(3)"
    typ, data = c.thread("ORDEREDSUBJECT", "UTF-8", "ALL")
    assert data[0] == b"(1 2)(3)"  # threads ordered by their first date
    c.logout()


def test_two_clients_get_identical_structures(imap_server, loaded):
    typ, d0 = loaded.fetch("1:*", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK"
    c2 = connect(imap_server)
    c2.select("INBOX", readonly=True)
    typ, d1 = c2.fetch("1:*", "(ENVELOPE BODYSTRUCTURE BODY)")
    assert typ == "OK" and d0 == d1
    c2.logout()


def test_sort_fills_the_parsed_cache_in_the_maildir(imap_server, loaded):
    root = imap_server.services.store.path_for(USER)
    typ, data = loaded.sort("(SUBJECT)", "UTF-8", "ALL")
    assert typ == "OK"
    assert (root / CACHE_NAME).exists()


def test_imapclient_parses_every_structure_of_the_broken_mail_corpus(imap_server):
    """ENVELOPE / BODYSTRUCTURE of 120 good and broken messages (the Dovecot parity corpus)
    parse in a real client library, literals and groups included."""
    from tests.imap.msg_dovecot_cases import CASES

    with IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=10) as c:
        c.login(USER, DEFAULT_PASSWORD)
        c.create_folder("Corpus")
        for raw, *_ in CASES.values():
            c.append("Corpus", crlf(raw) if raw else b"\r\n")
        c.select_folder("Corpus", readonly=True)
        uids = c.search("ALL")
        assert len(uids) == len(CASES)
        res = c.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822.SIZE"])
        assert len(res) == len(CASES)
        for data in res.values():
            assert data[b"BODYSTRUCTURE"] is not None and data[b"BODY"] is not None
            assert data[b"RFC822.SIZE"] >= 0
