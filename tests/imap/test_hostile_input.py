"""Input built to be deep or wide: a hostile (or merely unusual) request or mailbox is
answered with the protocol's error or a correct result, never a crashed handler."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
import tracemalloc

from tests.imap.conftest import IMAP_ONLY, USER, Raw, selected


def _drop_messages(srv, messages: list[bytes]) -> None:
    """Messages put straight into INBOX's Maildir (as another program's delivery would),
    faster than as many APPENDs; the first SELECT picks them up."""
    new = srv.services.store.path_for(USER) / "new"
    stamp = int(time.time())
    for i, raw in enumerate(messages):
        (new / f"{stamp}.M{i:06d}P1.test,S={len(raw)}").write_bytes(raw)


def _reply(i: int, parent: int | None) -> bytes:
    refs = (
        f"In-Reply-To: <m{parent}@x>\r\nReferences: <m{parent}@x>\r\n" if parent is not None else ""
    )
    return (
        f"From: a@example.test\r\nSubject: Re: one long thread\r\n"
        f"Date: Mon, 7 Feb 1994 21:52:{i % 60:02d} -0800\r\nMessage-ID: <m{i}@x>\r\n{refs}\r\n"
        f"reply {i}\r\n"
    ).encode()


# Deeper than Python's recursion limit (1000): each message answers the one before.
CHAIN = 1500


def test_thread_of_a_reply_chain_deeper_than_the_recursion_limit(imap_server):
    _drop_messages(imap_server, [_reply(i, i - 1 if i else None) for i in range(CHAIN)])
    r = selected(imap_server)
    chain = " ".join(str(n) for n in range(1, CHAIN + 1)).encode()
    for algorithm in (b"REFERENCES", b"REFS"):
        out = r.cmd(b"THREAD " + algorithm + b" UTF-8 ALL")
        assert out[-1].startswith(b"t OK"), out[-1]
        assert out[0] == b"* THREAD (" + chain + b")"
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
    r.close()


def test_thread_of_a_references_loop_through_every_message(imap_server):
    # Each message names the next as its parent, the last the first: one loop, broken once.
    _drop_messages(imap_server, [_reply(i, (i + 1) % CHAIN) for i in range(CHAIN)])
    r = selected(imap_server)
    out = r.cmd(b"THREAD REFERENCES UTF-8 ALL")
    assert out[-1].startswith(b"t OK"), out[-1]
    numbers = out[0][len(b"* THREAD (") : -1].split(b" ")
    assert sorted(int(n) for n in numbers) == list(range(1, CHAIN + 1))
    r.close()


def _nested(depth: int, inner: bytes) -> bytes:
    return b"(" * depth + inner + b")" * depth


def test_lists_nested_thousands_deep_are_refused_with_limit_and_the_session_goes_on(imap_server):
    r = selected(imap_server)
    assert r.cmd(b"APPEND INBOX {5+}\r\nhello")[-1].startswith(b"t OK")
    r.close()
    deep = 5000
    for command in (
        b"FETCH 1 " + _nested(deep, b"FLAGS"),
        b"SEARCH " + _nested(deep, b"ALL"),
        b"SORT (DATE) UTF-8 " + _nested(deep, b"ALL"),
        b"STORE 1 +FLAGS " + _nested(deep, b"\\Seen"),
        b"ID " + _nested(deep, b"NIL"),
        b"APPEND INBOX " + _nested(deep, b"\\Seen") + b" {5+}\r\nhello",
    ):
        r = selected(imap_server)  # a session per command: each BAD counts toward bad_commands
        out = r.cmd(command)
        assert out[-1].startswith(b"t BAD [LIMIT] "), (command[:20], out[-1])
        assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
        r.close()
    r = selected(imap_server)
    # Nesting a real client sends is untouched.
    out = r.cmd(b"SEARCH " + _nested(20, b"OR SEEN (NOT DELETED)"))
    assert out[-1].startswith(b"t OK"), out[-1]
    out = r.cmd(b"FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)])")
    assert out[-1].startswith(b"t OK"), out[-1]
    r.close()


def test_literals_of_a_command_other_than_append_count_toward_the_command_line_limit(
    imap_server,
):
    # Only APPEND carries messages; any other command's literals are names, passwords and
    # search strings, held in memory until the command is whole.
    limit = imap_server.config.imap.max_command_line
    r = selected(imap_server)
    assert r.cmd(b"SEARCH SUBJECT {5+}\r\nhello")[-1].startswith(b"t OK")
    r.send(b"t ID (" + b"{%d}\r\n" % (limit + 1))
    out = r.until_tagged(b"t")
    assert out[-1].startswith(b"t NO [TOOBIG]"), out  # no continuation was offered
    # Many literals each below the limit add up to it.
    piece = b"{%d}\r\n" % (limit // 4)
    r.send(b"t ID (" + piece)
    for _ in range(4):
        assert r.line().startswith(b"+ ")
        r.send(b"x" * (limit // 4) + b" " + piece)
    out = r.until_tagged(b"t")
    assert out[-1].startswith(b"t NO [TOOBIG]"), out
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
    # APPEND keeps its own, far larger limit.
    message = b"Subject: big\r\n\r\n" + b"y" * (2 * limit) + b"\r\n"
    out = r.cmd(b"APPEND INBOX {%d+}\r\n" % len(message) + message)
    assert out[-1].startswith(b"t OK"), out[-1]
    r.close()


def test_catenate_stops_reading_urls_once_the_message_passes_appendlimit(server_factory):
    srv = server_factory(
        auth={"plaintext": "loopback"}, listen=IMAP_ONLY, imap={"append_limit": 100_000}
    )
    srv.add_user(USER)
    r = selected(srv)
    body = b"Subject: part\r\n\r\n" + b"z" * 30_000 + b"\r\n"
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(body) + body)[-1].startswith(b"t OK")
    uidvalidity = (
        next(line for line in r.cmd(b"STATUS INBOX (UIDVALIDITY)") if line.startswith(b"* STATUS"))
        .split(b"UIDVALIDITY ")[1]
        .rstrip(b")")
    )
    good = b'URL "/INBOX;UIDVALIDITY=' + uidvalidity + b'/;UID=1"'
    # Four copies pass the limit: the parts after them are never read (the last one, which
    # names no message, would be BADURL), and nothing is stored.
    parts = b" ".join([good] * 4 + [b'URL "/INBOX;UIDVALIDITY=' + uidvalidity + b'/;UID=99"'])
    out = r.cmd(b"APPEND INBOX CATENATE (" + parts + b")")
    assert out[-1].startswith(b"t NO [TOOBIG]"), out[-1]
    exists = [line for line in r.cmd(b"NOOP") if line.endswith(b"EXISTS")]
    assert exists in ([], [b"* 1 EXISTS"])
    r.close()


def test_urlfetch_holds_one_part_at_a_time_however_many_urls(imap_server):
    """Thirty URLs naming one 1 MB message: the answer is the same one `* URLFETCH` response,
    but written part by part as each is read, so the server never holds them all at once
    (measured by tracemalloc over the whole process: the server runs in this one)."""
    r = selected(imap_server)
    body = b"Subject: big\r\n\r\n" + (b"q" * 998 + b"\r\n") * 1000
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(body) + body)[-1].startswith(b"t OK")
    count = 30
    tracemalloc.start()
    try:
        r.send(b"t URLFETCH " + b" ".join([b'"/INBOX/;UID=1"'] * count) + b"\r\n")
        # Read and drop the answer (holding it here would be counted too).
        received, tail = 0, b""
        while not tail.endswith(b"\r\nt OK URLFETCH completed\r\n"):
            chunk = r.sock.recv(1 << 16)
            assert chunk, tail
            received += len(chunk)
            tail = (tail + chunk)[-64:]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > count * len(body)
    assert peak < 8 * len(body), peak  # a few parts' worth, not thirty
    r.close()


def test_fetch_of_one_message_many_times_over_is_refused_with_limit(imap_server):
    """Sixty overlapping ranges of one message's text would be sixty copies of it in one
    response: past a few times the message's size the FETCH is NO [LIMIT]."""
    r = selected(imap_server)
    body = b"Subject: big\r\n\r\n" + (b"w" * 998 + b"\r\n") * 500
    assert r.cmd(b"APPEND INBOX {%d+}\r\n" % len(body) + body)[-1].startswith(b"t OK")
    r.cmd(b"NOOP")
    for item in (b"BODY.PEEK[TEXT]", b"BINARY.PEEK[1]", b"BODY.PEEK[1]"):
        items = b" ".join(item + b"<%d.%d>" % (i, len(body)) for i in range(60))
        out = r.cmd(b"FETCH 1 (" + items + b")")
        assert out[-1].startswith(b"t NO [LIMIT] "), out[-1]
        assert not any(line.startswith(b"* 1 FETCH") for line in out), item
    # What a mail client asks of one message together is answered.
    out = r.cmd(
        b"FETCH 1 (UID BODYSTRUCTURE BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] "
        b"BODY.PEEK[1.MIME] BINARY.PEEK[1] BODY.PEEK[])"
    )
    assert out[-1].startswith(b"t OK"), out[-1]
    r.close()


def test_a_full_keyword_table_drops_the_new_keyword_promise_from_permanentflags(imap_server):
    """Maildir names 26 keywords a folder; once they are taken PERMANENTFLAGS no longer offers
    \\* (new keywords), so a STORE of yet another one is ignored as RFC 3501 §7.1 allows,
    and thousands of them change nothing but the answer's time."""
    r = selected(imap_server)
    assert r.cmd(b"APPEND INBOX {5+}\r\nhello")[-1].startswith(b"t OK")
    r.cmd(b"NOOP")
    words = b" ".join(b"kw%d" % i for i in range(25))
    out = r.cmd(b"STORE 1 +FLAGS (" + words + b")")
    perm = [line for line in out if b"PERMANENTFLAGS" in line]
    assert perm and perm[-1].endswith(b"\\*)] Flags permitted"), out[:3]
    many = b" ".join(b"more%d" % i for i in range(3000))
    out = r.cmd(b"STORE 1 +FLAGS (" + many + b")")
    assert out[-1].startswith(b"t OK"), out[-1]
    perm = [line for line in out if b"PERMANENTFLAGS" in line]
    assert perm and b"\\*" not in perm[-1], perm
    (fetched,) = [line for line in r.cmd(b"FETCH 1 FLAGS") if line.startswith(b"* 1 FETCH")]
    assert fetched.count(b"kw") == 25 and fetched.count(b"more") == 1
    r.close()
    # A new session is told at SELECT.
    r = selected(imap_server)
    r.close()
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"SELECT INBOX")
    perm = [line for line in out if b"PERMANENTFLAGS" in line]
    assert perm and b"\\*" not in perm[0], perm
    r.close()


def _thread_nodes() -> int:
    return sum(
        1
        for o in gc.get_objects()
        if type(o).__name__ == "_Node" and type(o).__module__ == "mailsuite.imap.commands.thread"
    )


def test_thread_leaves_no_tree_for_the_cycle_collector(imap_server):
    """The threading tree links each container to its parent and its children; left so, every
    THREAD of a big folder left its whole tree as cyclic garbage, which a server with raised
    collector thresholds kept for a long time (RSS grew by 40 MB per THREAD of 10,000
    messages). With the collector off, nothing of the tree may outlive the command."""
    _drop_messages(imap_server, [_reply(i, i - 1 if i % 7 else None) for i in range(300)])
    r = selected(imap_server)
    gc.collect()
    gc.disable()
    try:
        before = _thread_nodes()
        for algorithm in (b"REFERENCES", b"REFS", b"ORDEREDSUBJECT"):
            assert r.cmd(b"THREAD " + algorithm + b" UTF-8 ALL")[-1].startswith(b"t OK")
            assert _thread_nodes() == before, algorithm
    finally:
        gc.enable()
    r.close()


# Message files opened while a recording is on: (thread name, path). An audit hook cannot be
# removed, so it stays installed and records only between `_recording` calls.
_opened: list | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and not isinstance(args[0], int):
        path = os.fsdecode(os.fspath(args[0]))
        if "/new/" in path or "/cur/" in path:
            _opened.append((threading.current_thread().name, path))


sys.addaudithook(_audit)


def test_fetch_of_many_uncached_messages_reads_their_files_off_the_reactor(imap_server):
    """Small files are read on the reactor only a few at a time: a batch of a thousand small
    messages fitted the inline size and was read, parsed and put in the parsed cache there,
    holding every other client for 150-190 ms."""
    global _opened
    _drop_messages(imap_server, [_reply(i, None) for i in range(200)])
    r = selected(imap_server)
    _opened = []
    try:
        out = r.cmd(b"FETCH 1:* (UID ENVELOPE)")
        recorded, _opened = _opened, None
    finally:
        _opened = None
    assert out[-1].startswith(b"t OK"), out[-1]
    assert sum(line.startswith(b"* ") for line in out) == 200
    assert len(recorded) >= 200  # the files were read for this FETCH
    assert [name for name, _ in recorded if name == "reactor"] == []
    # One message (what a client reading mail asks for) is still read where it is asked.
    r.cmd(b"FETCH 1 BODY.PEEK[]")
    r.close()


def test_envelope_sort_and_thread_of_hostile_from_and_subject_answer_at_once(imap_server):
    """A From: of 40,000 unclosed quoted strings (48 s of CPU for its ENVELOPE when each
    quote was read on to the end of the field) and a Subject: of 40,000 blobs (a minute for
    its base subject): the answers come within the client's 10 s socket timeout."""
    hostile = (
        b"From: " + b'"\\' * 40_000 + b"\r\nSubject: " + b"[a]" * 40_000 + b" x\r\n"
        b"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\nbody\r\n"
    )
    plain = b"From: b@example.test\r\nSubject: Re: x\r\n\r\nbody\r\n"
    _drop_messages(imap_server, [hostile, plain])
    r = selected(imap_server)
    out = r.cmd(b"FETCH 1 (ENVELOPE)")
    assert out[-1].startswith(b"t OK"), out[-1]
    assert b"MISSING_MAILBOX" in b"".join(out)
    assert r.cmd(b"SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 1 2"
    assert r.cmd(b"THREAD ORDEREDSUBJECT UTF-8 ALL")[0] == b"* THREAD (1 2)"
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
    r.close()
