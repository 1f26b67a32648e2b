"""Big FETCH bodies streamed from their files (RFC 3501 §6.4.5, §7.4.2): byte for byte what
the whole conversion gives, whole and in <partial> ranges, over plain TCP, TLS and COMPRESS;
a client that stops reading holds a bounded part of the message in the server; a message
expunged meanwhile still arrives whole, or as NIL once its file is gone."""

from __future__ import annotations

import gc
import imaplib
import re
import socket
import time
import zlib

import pytest

from mailsuite.imap.literal import STREAM_FROM
from mailsuite.imap.literal_stream import CHUNK
from mailsuite.imap.server import ImapProtocol
from mailsuite.store.message import wire_size
from tests.conftest import DEFAULT_PASSWORD, client_tls_context
from tests.imap.conftest import USER, Raw, connect

MiB = 1024 * 1024


def stored_message(megabytes: int, seed: int = 0) -> bytes:
    """What another program might leave in a Maildir: LF lines, a CRLF pair split across the
    first chunk boundary, a bare CR ending the second chunk, CRLF lines and NULs here and
    there, and no line end at the very end."""
    head = b"From: big@example.net\nSubject: big %d\n\n" % seed
    line = b"abcdefghijklmnopqrstuvwxyz0123456789" * 2 + b"\n"
    body = bytearray(head + line * (megabytes * MiB // len(line)))
    body[CHUNK - 1 : CHUNK + 1] = b"\r\n"
    body[2 * CHUNK - 1 : 2 * CHUNK + 1] = b"\rx"
    body[3 * CHUNK - 1] = ord("\n")
    for pos in range(CHUNK + 100, len(body), 3 * CHUNK + 7):
        body[pos : pos + 4] = b"\x00\r\n\x00"
    body[-1:] = b"."
    return bytes(body)


def reference_wire(stored: bytes) -> bytes:
    """The wire form by an independent rule: a CR before every LF that lacks one, and 0x80
    for NUL (RFC 3501 §4.3)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", stored).replace(b"\x00", b"\x80")


def drop_into_inbox(srv, stored: bytes, name: str, with_sizes: bool = True) -> None:
    """A file written straight into the Maildir (as another delivery agent would), with or
    without the ,S=/,W= sizes in its name."""
    cur = srv.services.store.path_for(USER) / "cur"
    sizes = f",S={len(stored)},W={wire_size(stored)}" if with_sizes else ""
    (cur / f"{name}{sizes}:2,").write_bytes(stored)


def ranges(stored: bytes) -> list[tuple[int, int]]:
    """<origin.length> pairs around the wire positions of the first chunk boundaries, at the
    ends, and past the end."""
    n = len(reference_wire(stored))
    out = [(0, 1), (1, 7), (0, n), (n - 10, 100), (n, 5), (n + 3, 5), (5, 3 * CHUNK + 17)]
    for k in (1, 2, 3):
        edge = len(reference_wire(stored[: k * CHUNK]))
        for delta in (-2, -1, 0, 1, 2):
            out.append((edge + delta, 5))
            out.append((edge + delta, CHUNK + 3))
    return out


class Big:
    """Messages dropped into INBOX: their stored bytes and wire forms, by sequence number."""

    def __init__(self, srv, megabytes: list[int]):
        self.srv = srv
        self.stored = [stored_message(mb, i) for i, mb in enumerate(megabytes, 1)]
        self.wires = [reference_wire(s) for s in self.stored]
        for i, stored in enumerate(self.stored, 1):
            assert len(stored) >= STREAM_FROM
            # The first without sizes in its name: the index reads them from the file.
            drop_into_inbox(srv, stored, f"170000000{i}.M{i}P1.other", with_sizes=i > 1)


@pytest.fixture
def two_big(imap_server):
    """INBOX: a 5 MB message and a 20 MB one."""
    big = Big(imap_server, [5, 20])
    return imap_server, big


@pytest.fixture
def one_batch(imap_server):
    """INBOX: a 10 MB message and a 3 MB one, fetched in one batch (READ_BUDGET)."""
    return imap_server, Big(imap_server, [10, 3])


def imaplib_fetches(c: imaplib.IMAP4, big: Big) -> None:
    assert c.select("INBOX")[0] == "OK"
    for seq, (stored, wire) in enumerate(zip(big.stored, big.wires, strict=True), 1):
        typ, data = c.fetch(str(seq), "(BODY.PEEK[])")
        assert typ == "OK"
        assert data[0][0].endswith(b"BODY[] {%d}" % len(wire))
        assert data[0][1] == wire
        for origin, length in ranges(stored):
            typ, data = c.fetch(str(seq), f"(BODY.PEEK[]<{origin}.{length}>)")
            assert typ == "OK"
            assert data[0][1] == wire[origin : origin + length], (seq, origin, length)
    typ, data = c.fetch("1", "(RFC822)")
    assert data[0][1] == big.wires[0]


def test_big_bodies_whole_and_partial_over_plain_tcp(two_big):
    srv, big = two_big
    imaplib_fetches(connect(srv), big)


def test_big_bodies_whole_and_partial_over_tls(two_big):
    srv, big = two_big
    c = imaplib.IMAP4_SSL(
        "127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context(), timeout=20
    )
    c.login(USER, DEFAULT_PASSWORD)
    imaplib_fetches(c, big)


class Deflating:
    """A raw client that has turned COMPRESS=DEFLATE on (RFC 4978)."""

    def __init__(self, port: int):
        self.raw = Raw(port)
        self.raw.login()
        assert self.raw.cmd(b"COMPRESS DEFLATE", b"z")[-1].startswith(b"z OK")
        self.comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.dec = zlib.decompressobj(-15)
        self.data = self.dec.decompress(self.raw.buf)

    def cmd(self, text: bytes, tag: bytes) -> bytes:
        """Everything up to and including the tagged reply."""
        self.raw.sock.sendall(
            self.comp.compress(tag + b" " + text + b"\r\n") + self.comp.flush(zlib.Z_SYNC_FLUSH)
        )
        end = b"\r\n" + tag + b" "
        while end not in self.data or not self.data.endswith(b"\r\n"):
            chunk = self.raw.sock.recv(1 << 20)
            assert chunk, self.data[-200:]
            self.data += self.dec.decompress(chunk)
        out, self.data = self.data, b""
        return out


def test_big_bodies_whole_and_partial_through_compress(two_big):
    srv, big = two_big
    c = Deflating(srv.port("imap"))
    c.cmd(b"SELECT INBOX", b"s")
    for seq, (stored, wire) in enumerate(zip(big.stored, big.wires, strict=True), 1):
        got = c.cmd(b"FETCH %d (BODY.PEEK[])" % seq, b"f")
        assert got == b"* %d FETCH (BODY[] {%d}\r\n" % (seq, len(wire)) + wire + (
            b")\r\nf OK FETCH completed\r\n"
        )
        for origin, length in ranges(stored)[::3]:
            got = c.cmd(b"FETCH %d (BODY.PEEK[]<%d.%d>)" % (seq, origin, length), b"p")
            part = wire[origin : origin + length]
            label = b"BODY[]<%d> {%d}\r\n" % (origin, len(part))
            assert got == b"* %d FETCH (%s%s)\r\np OK FETCH completed\r\n" % (seq, label, part)


def test_two_literals_and_the_rest_of_the_response_stay_in_order(one_batch):
    srv, big = one_batch
    r = Raw(srv.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.send(b"f FETCH 1:2 (UID BODY.PEEK[]<3.10> RFC822.SIZE BODY.PEEK[])\r\nn NOOP\r\n")
    expected = b""
    for seq, wire in enumerate(big.wires, 1):
        expected += b"* %d FETCH (UID %d BODY[]<3> {10}\r\n%s RFC822.SIZE %d BODY[] {%d}\r\n" % (
            seq,
            seq,
            wire[3:13],
            len(wire),
            len(wire),
        )
        expected += wire + b")\r\n"
    expected += b"f OK FETCH completed\r\nn OK NOOP completed\r\n"
    got = r.buf
    while len(got) < len(expected):
        chunk = r.sock.recv(1 << 20)
        assert chunk
        got += chunk
    assert got == expected


def streaming_protocols() -> list[ImapProtocol]:
    """The server's IMAP connections (it runs in this process) that are streaming a body."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, ImapProtocol) and not o.closed and o._gate.stream is not None
    ]


def pending_output(proto: ImapProtocol) -> int:
    """Bytes the server holds for the client beyond the kernel: the TCP transport's buffer
    (and, under TLS, the TLS layer's)."""
    t = proto.transport
    held = 0
    if hasattr(t, "_aggregator"):  # TLS: its small-write buffer, then the TCP transport
        held += sum(len(b) for b in getattr(t._aggregator, "_buffer", []))
        held += sum(len(b) for b in t._appSendBuffer)
        t = t.transport
    return held + len(t.dataBuffer) - t.offset + t._tempDataLen


def slow_client(srv, tls: bool) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect
    sock.settimeout(20)
    sock.connect(("127.0.0.1", srv.port("imaps" if tls else "imap")))
    if tls:
        sock = client_tls_context().wrap_socket(sock)
    return sock


def streaming_fetch(srv, command: bytes) -> socket.socket:
    """A client that reads slowly, logged in with INBOX selected, whose `command` is under
    way: a body is streaming to it."""
    sock = slow_client(srv, False)
    sock.sendall(f'a LOGIN {USER} "{DEFAULT_PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
    read_until(sock, b"", b"b OK [READ-WRITE] SELECT completed\r\n")
    sock.sendall(command + b"\r\n")
    time.sleep(0.5)
    assert srv.call(streaming_protocols)
    return sock


def read_until(sock, data: bytes, end: bytes) -> bytes:
    while not data.endswith(end):
        chunk = sock.recv(1 << 20)
        assert chunk, data[-200:]
        data += chunk
    return data


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_client_that_stops_reading_holds_a_bounded_part_of_the_message(two_big, tls):
    srv, big = two_big
    sock = slow_client(srv, tls)
    sock.sendall(f'a LOGIN {USER} "{DEFAULT_PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
    data = read_until(sock, b"", b"b OK [READ-WRITE] SELECT completed\r\n")
    sock.sendall(b"c FETCH 2 (BODY.PEEK[])\r\n")
    time.sleep(1.0)
    streams = srv.call(streaming_protocols)
    assert len(streams) == 1
    proto = streams[0]
    held = srv.call(pending_output, proto)
    stream = proto._gate.stream
    read = stream._file_pos
    ready = sum(len(p) for pieces, _ in stream._ready for p in pieces)
    # The transport's buffer plus a write, one job's chunks, and what the kernel's socket
    # buffers took: not the 20 MB.
    assert held + ready <= 4 * CHUNK, (held, ready)
    assert read <= 8 * MiB, read
    data = read_until(sock, b"", b"c OK FETCH completed\r\n")
    wire = big.wires[1]
    assert data == b"* 2 FETCH (BODY[] {%d}\r\n%s)\r\nc OK FETCH completed\r\n" % (len(wire), wire)
    assert srv.call(streaming_protocols) == []
    sock.close()


def test_a_message_expunged_while_its_body_streams_arrives_whole(two_big):
    srv, big = two_big
    sock = streaming_fetch(srv, b"c FETCH 2 (BODY.PEEK[])")
    other = connect(srv)
    other.select("INBOX")
    assert other.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert other.expunge()[0] == "OK"
    assert len(srv.message_files(USER)) == 1  # the file is gone from the Maildir
    data = read_until(sock, b"", b"c OK FETCH completed\r\n")
    wire = big.wires[1]
    assert data == b"* 2 FETCH (BODY[] {%d}\r\n%s)\r\nc OK FETCH completed\r\n" % (len(wire), wire)
    sock.sendall(b"d NOOP\r\n")
    assert read_until(sock, b"", b"d OK NOOP completed\r\n").startswith(b"* 2 EXPUNGE\r\n")
    sock.close()
    other.logout()


def test_a_body_whose_file_is_gone_before_its_turn_is_nil(one_batch):
    # RFC 2180 §4.1: a message expunged by another session but not yet announced here may
    # be answered with what can still be returned; its body cannot, once its file is gone.
    srv, big = one_batch
    sock = streaming_fetch(
        srv, b"c FETCH 1:2 (UID BODY.PEEK[])"
    )  # message 1's body, with 2's waiting behind it
    other = connect(srv)
    other.select("INBOX")
    assert other.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert other.expunge()[0] == "OK"
    data = read_until(sock, b"", b"c OK FETCH completed\r\n")
    wire = big.wires[0]
    assert data == (
        b"* 1 FETCH (UID 1 BODY[] {%d}\r\n%s)\r\n* 2 FETCH (UID 2 BODY[] NIL)\r\n"
        b"c OK FETCH completed\r\n" % (len(wire), wire)
    )
    sock.close()
    other.logout()


def test_a_body_renamed_by_a_flag_change_before_its_turn_arrives_whole(one_batch):
    srv, big = one_batch
    sock = streaming_fetch(srv, b"c FETCH 1:2 (BODY.PEEK[])")
    other = connect(srv)
    other.select("INBOX")
    assert other.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK"  # a new file name
    data = read_until(sock, b"", b"c OK FETCH completed\r\n")
    one, two = big.wires
    assert data == (
        b"* 1 FETCH (BODY[] {%d}\r\n%s)\r\n* 2 FETCH (BODY[] {%d}\r\n%s)\r\n"
        b"c OK FETCH completed\r\n" % (len(one), one, len(two), two)
    )
    sock.close()
    other.logout()


def test_many_big_messages_fetched_in_byte_bounded_batches_all_arrive(imap_server):
    """BODY[1] is not streamed: the files are read whole, READ_BUDGET bytes of them at a
    time (three batches here), and every body arrives in order."""
    for i in range(6):
        body = b"Subject: m%d\n\n" % i + (b"%d" % i) * (7 * MiB) + b"\n"
        drop_into_inbox(imap_server, body, f"17000001{i:02d}.M{i}P1.other")
    c = connect(imap_server)
    c.select("INBOX")
    typ, data = c.fetch("1:6", "(BODY.PEEK[1])")
    assert typ == "OK"
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    assert bodies == [(b"%d" % i) * (7 * MiB) + b"\r\n" for i in range(6)]


def test_a_big_body_fetched_in_pieces_resumes_where_the_last_piece_ended(two_big):
    """Thunderbird's way of downloading a big message: <partial> pieces one after another.
    Each piece is right, and the server remembers where the previous one ended in the file,
    so the last piece starts there instead of converting 19 MB again."""
    srv, big = two_big
    c = connect(srv)
    c.select("INBOX")
    wire, piece = big.wires[1], 1 * MiB + 17
    positions = srv.services.imap.wire_positions
    resumed = positions.resumed
    got = b""
    for origin in range(0, len(wire), piece):
        typ, data = c.fetch("2", f"(BODY.PEEK[]<{origin}.{piece}>)")
        assert typ == "OK"
        got += data[0][1]
    assert got == wire
    folder = srv.call(lambda: srv.services.store.mailbox(USER).folder("INBOX"))
    msg = folder.messages[1]
    key = (str(folder.path), msg.key, msg.size)
    assert positions.resumed - resumed == len(range(piece, len(wire), piece))
    # Where the last chunk read began: within the last piece, not at the start.
    mark = srv.call(positions.before, key, len(wire))
    assert mark is not None and origin - 2 * CHUNK < mark[1] <= len(wire), (mark, origin)


def test_a_file_whose_size_differs_from_its_name_is_counted_from_its_bytes(imap_server):
    # ,S= and ,W= written wrong by another program: the count comes from the file itself.
    stored = stored_message(3, 4)
    cur = imap_server.services.store.path_for(USER) / "cur"
    name = f"1700000009.M9P1.other,S={len(stored) + 10},W={wire_size(stored) + 12}:2,"
    (cur / name).write_bytes(stored)
    c = connect(imap_server)
    c.select("INBOX")
    wire = reference_wire(stored)
    typ, data = c.fetch("1", "(BODY.PEEK[] BODY.PEEK[]<7.100>)")
    assert typ == "OK"
    assert data[0][0].endswith(b"BODY[] {%d}" % len(wire)) and data[0][1] == wire
    assert data[1][0].endswith(b"BODY[]<7> {100}") and data[1][1] == wire[7:107]


def test_a_body_shorter_than_its_announced_count_closes_the_connection(imap_server, logs):
    # ,W= too big for the file's bytes: the count is out before the shortfall shows, and
    # the only honest end is to close rather than send a wrong literal.
    stored = stored_message(3, 5)
    cur = imap_server.services.store.path_for(USER) / "cur"
    name = f"1700000010.M10P1.other,S={len(stored)},W={wire_size(stored) + 5}:2,"
    (cur / name).write_bytes(stored)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.send(b"f FETCH 1 (BODY.PEEK[])\r\n")
    got = r.buf
    try:
        while chunk := r.sock.recv(1 << 20):
            got += chunk
    except ConnectionResetError:
        pass  # aborted: what was in flight may be dropped
    assert got.startswith(b"* 1 FETCH (BODY[] {%d}\r\n" % (wire_size(stored) + 5))
    assert b"f OK" not in got
    assert logs.matching("streaming a message body failed")
