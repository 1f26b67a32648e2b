"""Large APPEND literals are streamed to a temporary file (written by the durable pool,
tests/imap/test_append_spool.py) and copied into the Maildir in pieces
(RFC 3501 §6.3.11), arriving byte for byte."""

from __future__ import annotations

from mailsuite.imap.parser import SPOOL_LITERALS_ABOVE, CommandReader, LiteralFile
from tests.imap.conftest import USER, Raw, connect


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
    # The reader touches no disk: it queues the chunks for its feeder to write, in order.
    assert literal.complete and literal.file is None
    assert literal.pending_bytes == len(data) and b"".join(literal.take_pending()) == data
    assert r.take_spools() == [literal]


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


def test_multiappend_spools_once_the_command_holds_a_spool_size_in_memory():
    # Each message at the spool size stays in memory alone; a MULTIAPPEND of many would hold
    # them all until the command is whole, so the ones after the first go to files.
    data = _big_message(SPOOL_LITERALS_ABOVE)
    r = CommandReader()
    r.feed(b"a1 APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(data) + data for _ in range(3)))
    r.feed(b"\r\n")
    while (cmd := r.next_event()) is None:
        pass
    first, *rest = cmd.args[1:]
    assert first == data and not isinstance(first, LiteralFile)
    assert [type(x) for x in rest] == [LiteralFile, LiteralFile]
    for literal in rest:
        assert literal.complete and b"".join(literal.take_pending()) == data
    assert r.take_spools() == rest


def test_multiappend_and_catenate_of_spooled_parts_round_trip(imap_server):
    data = _big_message(SPOOL_LITERALS_ABOVE)
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(data) + data for _ in range(3)))
    assert out[-1].startswith(b"t OK [APPENDUID"), out[-1]
    # CATENATE's TEXT parts after the first spool as well; the message is their sum.
    tail = b"0123456789" * (SPOOL_LITERALS_ABOVE // 10)
    parts = b" ".join(b"TEXT {%d+}\r\n" % len(p) + p for p in (data, tail, tail))
    out = r.cmd(b"APPEND INBOX CATENATE (" + parts + b")")
    assert out[-1].startswith(b"t OK [APPENDUID"), out[-1]
    r.close()
    stored = data.replace(b"\r\n", b"\n")  # the store keeps LF line ends
    assert imap_server.messages(USER) == [stored] * 3 + [stored + tail + tail]


def test_replace_carries_messages_as_append_does(imap_server):
    # REPLACE's message is held to APPENDLIMIT and spooled like APPEND's, not to the command
    # line's limit as other commands' literals are.
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"APPEND INBOX {5+}\r\nhello")[-1].startswith(b"t OK")
    r.cmd(b"SELECT INBOX")
    data = _big_message(2 * SPOOL_LITERALS_ABOVE)
    out = r.cmd(b"REPLACE 1 INBOX {%d+}\r\n" % len(data) + data)
    assert out[-1].startswith(b"t OK"), out[-1]
    out = r.cmd(b"UID REPLACE 2 INBOX {%d+}\r\n" % len(data) + data)
    assert out[-1].startswith(b"t OK"), out[-1]
    r.close()
    assert imap_server.messages(USER) == [data.replace(b"\r\n", b"\n")]
