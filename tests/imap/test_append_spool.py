"""A large APPEND's literal is written to its temporary file by the durable-I/O service, never
on the reactor thread (RFC 3501 §6.3.11 messages of tens of MB): the reader only queues the
arriving chunks, reading from the client pauses while too many wait unwritten, and the
command runs once the last one is on disk.  A client that goes half-way, or a write that
fails, leaves no file behind."""

from __future__ import annotations

import os
import resource
import signal
import socket
import tempfile
import time
import tracemalloc

import imapclient

from mailsuite.imap.parser import SPOOL_LITERALS_ABOVE
from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import USER, Raw, connect
from tests.reactor_disk import ReactorDiskWatch, reactor_thread

MB = 1024 * 1024


def _big_message(size: int, mark: bytes = b"big") -> bytes:
    head = b"From: a@example.test\r\nSubject: " + mark + b"\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"  # 74 octets
    return head + line * (size // len(line))


def _spool_files() -> int:
    """Temporary files of this process: named ones in the system's temporary folder (where
    literals are spooled) and the unnamed or unlinked ones still held open there."""
    tmp = tempfile.gettempdir()
    named = sum(1 for n in os.listdir(tmp) if n.startswith("mailsuite-append-"))
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(tmp + "/") and target.endswith("(deleted)"):
            held += 1
    return named + held


def _until(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_append_of_5_mb_spools_in_the_durable_pool_and_reads_back(imap_server):
    data = _big_message(5 * MB)
    watch = ReactorDiskWatch.get()
    before = _spool_files()
    c = connect(imap_server)
    c.select("INBOX")  # loaded (its index written) before the watch: APPEND's part only
    with watch.window(reactor_thread()) as events:
        typ, resp = c.append("INBOX", None, None, data)
    assert typ == "OK" and b"APPENDUID" in resp[0], resp
    assert _until(lambda: _spool_files() == before), "the spooled literal was not closed"
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    typ, got = c.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and got[0][1] == data
    c.logout()


def test_multiappend_of_three_2_mb_messages_spools_in_the_durable_pool(imap_server):
    messages = [_big_message(2 * MB, b"part %d" % i) for i in range(3)]
    watch = ReactorDiskWatch.get()
    before = _spool_files()
    c = imapclient.IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=30)
    c.login(USER, DEFAULT_PASSWORD)
    c.select_folder("INBOX")
    with watch.window(reactor_thread()) as events:
        c.multiappend("INBOX", messages)
    assert _until(lambda: _spool_files() == before), "a spooled literal was not closed"
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    c.noop()
    got = c.fetch(c.search("ALL"), ["BODY.PEEK[]"])
    assert [got[uid][b"BODY[]"] for uid in sorted(got)] == messages
    c.logout()


def test_a_client_gone_half_way_through_a_big_literal_leaves_no_file(imap_server):
    before = _spool_files()
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"a APPEND INBOX {%d+}\r\n" % (40 * MB))
    chunk = b"x" * MB
    for _ in range(6):
        r.send(chunk)
    # the spool file exists while the literal arrives (the count sees it) ...
    assert _until(lambda: _spool_files() > before)
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    r.close()
    # ... and is gone with the client
    assert _until(lambda: _spool_files() == before), _spool_files()
    assert imap_server.messages(USER) == []


def test_memory_stays_bounded_while_a_50_mb_literal_arrives(imap_server):
    size = 50 * MB
    head = b"From: a@example.test\r\nSubject: huge\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    block = line * (MB // len(line))
    blocks, rest = divmod(size - len(head), len(block))
    r = Raw(imap_server.port("imap"))
    r.login()
    tracemalloc.start()
    try:
        r.send(b"a APPEND INBOX {%d+}\r\n" % size + head)
        for _ in range(blocks):
            r.send(block)
        r.send(block[:rest] + b"\r\n")  # the literal's last octets, then the command's end
        out = r.until_tagged(b"a")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out[-1].startswith(b"a OK [APPENDUID"), out
    # a few MiB wait unwritten at most (and the delivery copies in pieces), never the 50 MB
    assert peak < 24 * MB, peak
    r.close()
    [stored] = imap_server.message_files(USER)
    tail = block[:rest]
    crlfs = head.count(b"\r\n") + blocks * block.count(b"\r\n") + tail.count(b"\r\n")
    assert stored.stat().st_size == size - crlfs  # stored with LF line ends


def test_a_failed_spool_write_answers_no_and_leaves_no_file(imap_server):
    data = _big_message(6 * MB)
    r = Raw(imap_server.port("imap"))
    r.login()
    before = _spool_files()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # A file-size limit of the whole process: past 3 MB a write fails (EFBIG), as on a full
    # disk; the message itself would not get further.
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 * MB, hard))
    try:
        out = r.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data, b"a")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert out[-1].startswith(b"a NO [SERVERBUG]"), out
    assert _until(lambda: _spool_files() == before), _spool_files()
    # the stream stayed in step: the rest of the literal was read and dropped
    assert r.cmd(b"NOOP", b"n")[-1] == b"n OK NOOP completed"
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data, b"b")[-1].startswith(b"b OK")
    r.close()
    assert imap_server.messages(USER) == [data.replace(b"\r\n", b"\n")]


def test_small_literals_stay_in_memory(imap_server):
    data = _big_message(SPOOL_LITERALS_ABOVE // 2)
    watch = ReactorDiskWatch.get()
    before = _spool_files()
    c = connect(imap_server)
    c.select("INBOX")
    with watch.window(reactor_thread()) as events:
        assert c.append("INBOX", None, None, data)[0] == "OK"
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    assert _spool_files() == before
    c.logout()


def test_refused_commands_leave_no_spooled_file(imap_server):
    data = _big_message(2 * MB)
    r = Raw(imap_server.port("imap"))
    r.login()
    before = _spool_files()
    # MULTIAPPEND whose second message is over APPENDLIMIT: refused (RFC 7889 TOOBIG) with the
    # first one already spooled
    r.send(b"a APPEND INBOX {%d+}\r\n" % len(data) + data + b" {%d}\r\n" % (200 * MB))
    assert r.until_tagged(b"a")[-1].startswith(b"a NO [TOOBIG]")
    # a mailbox that does not exist: the APPEND itself refuses the spooled message
    out = r.cmd(b"APPEND Nowhere {%d+}\r\n" % len(data) + data, b"b")
    assert out[-1].startswith(b"b NO [TRYCREATE]"), out
    # a malformed command around a spooled message
    out = r.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data + b' "stray', b"c")
    assert out[-1].startswith(b"c BAD"), out
    assert _until(lambda: _spool_files() == before), _spool_files()
    assert r.cmd(b"NOOP", b"n")[-1] == b"n OK NOOP completed"
    r.close()
    assert imap_server.messages(USER) == []
