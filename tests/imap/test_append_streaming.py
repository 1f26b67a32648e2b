"""Large APPEND literals are streamed to a temporary file and copied into the Maildir in pieces
(RFC 3501 §6.3.11), arriving byte for byte."""

from __future__ import annotations

from mailsuite.imap.parser import SPOOL_LITERALS_ABOVE, CommandReader, LiteralFile
from tests.imap.conftest import USER, connect


def _big_message(size: int) -> bytes:
    head = b"From: a@example.test\r\nSubject: big\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"  # 74 octets
    return head + line * (size // len(line))


def test_reader_spools_a_large_append_literal_to_a_file():
    data = _big_message(SPOOL_LITERALS_ABOVE + 1000)
    r = CommandReader()
    r.feed(b"a1 APPEND INBOX {%d+}\r\n" % len(data))
    assert r.next_event() is None
    # Arrives in pieces, as from a socket.
    for i in range(0, len(data), 65536):
        r.feed(data[i : i + 65536])
        r.next_event() if i + 65536 < len(data) else None
    r.feed(b"\r\n")
    cmd = r.next_event()
    literal = cmd.args[-1]
    assert isinstance(literal, LiteralFile)
    assert len(literal) == len(data)
    assert literal.file.read() == data
    literal.close()


def test_small_append_literal_stays_bytes():
    r = CommandReader()
    r.feed(b"a1 APPEND INBOX {5+}\r\nhello\r\n")
    assert r.next_event().args[-1] == b"hello"


def test_append_of_a_large_message_round_trips(imap_server):
    data = _big_message(5 * 1024 * 1024)
    c = connect(imap_server)
    typ, resp = c.append("INBOX", "(\\Seen)", None, data)
    assert typ == "OK" and b"APPENDUID" in resp[0]
    c.select("INBOX")
    typ, got = c.fetch("1", "(RFC822.SIZE FLAGS BODY.PEEK[])")
    assert typ == "OK"
    assert f"RFC822.SIZE {len(data)}".encode() in got[0][0]
    assert b"\\Seen" in got[0][0]
    assert got[0][1] == data
    files = imap_server.message_files(USER)
    assert len(files) == 1 and b"\r\n" not in files[0].read_bytes()[:200]
    c.logout()
