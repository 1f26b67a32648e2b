"""Bodies FETCH sent once are kept in wire form (`ImapState.bodies`): a second FETCH of the
message (whole, a <partial> range, RFC822) is byte for byte what the first one was and what
the conversion of the stored bytes gives (RFC 3501 §6.4.5, §4.3: CRLF line ends, no NUL),
without reading the file again."""

from __future__ import annotations

import pytest

from mailsuite.store.folder import Folder
from tests.imap.conftest import connect
from tests.imap.test_fetch_streaming import drop_into_inbox, reference_wire

STORED = [
    b"From: a@example.net\nSubject: one\n\nplain LF lines\nand more\n",
    b"From: b@example.net\r\nSubject: two\r\n\r\nCRLF, a bare\rCR, a NUL \x00 here\r\n",
    b"From: c@example.net\nSubject: three\n\n" + b"0123456789abcdef\n" * 4000,
]
ITEMS = ["BODY.PEEK[]", "BODY.PEEK[]<5.40>", "BODY.PEEK[]<60>", "RFC822"]


@pytest.fixture
def counted_reads(monkeypatch):
    """Which message files the server reads whole (Folder.read_present), by key."""
    reads: list[str] = []
    original = Folder.read_present

    def read_present(self, msg):
        reads.append(msg.key)
        return original(self, msg)

    monkeypatch.setattr(Folder, "read_present", read_present)
    return reads


def fetch_all(c) -> dict:
    out = {}
    for seq in range(1, len(STORED) + 1):
        for item in ITEMS:
            typ, data = c.fetch(str(seq), f"({item})")
            assert typ == "OK", (seq, item, data)
            out[(seq, item)] = data[0][1]
    return out


def expected(seq: int, item: str) -> bytes:
    wire = reference_wire(STORED[seq - 1])
    if item.endswith("<5.40>"):
        return wire[5:45]
    if item.endswith("<60>"):
        return wire[60:]
    return wire


def test_a_body_fetched_again_is_the_same_and_its_file_is_not_read(imap_server, counted_reads):
    for i, stored in enumerate(STORED, 1):
        drop_into_inbox(imap_server, stored, f"170000000{i}.M{i}P1.other")
    c = connect(imap_server)
    assert c.select("INBOX")[0] == "OK"
    first = fetch_all(c)
    for (seq, item), data in first.items():
        assert data == expected(seq, item), (seq, item)
    reads = len(counted_reads)
    assert reads == len(STORED)  # once each, by the first FETCH
    # Another session, and a flag change that renames the file, change nothing.
    assert c.store("1:*", "+FLAGS", "(\\Flagged)")[0] == "OK"
    other = connect(imap_server)
    assert other.select("INBOX")[0] == "OK"
    assert fetch_all(other) == first
    assert len(counted_reads) == reads
    other.logout()
    c.logout()


def test_bodies_memory_stays_within_its_budget(imap_server):
    bodies = imap_server.services.imap.bodies
    bodies.budget = 100_000
    for i in range(1, 11):
        drop_into_inbox(imap_server, STORED[2], f"170000001{i}.M{i}P1.other")
    c = connect(imap_server)
    assert c.select("INBOX")[0] == "OK"
    for seq in range(1, 11):
        typ, data = c.fetch(str(seq), "(BODY.PEEK[])")
        assert data[0][1] == reference_wire(STORED[2])
    assert 0 < bodies.used <= bodies.budget
    c.logout()
