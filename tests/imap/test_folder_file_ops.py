"""Flag changes rename message files and expunges unlink them in the durable pool, one
folder's operations in the order they were decided (store/file_ops.py); the index changes on
the reactor at once.  Real clients over real sockets, real files: nothing of it on the reactor
thread, no flag and no message lost to a race, replies only once the disk says what they
say, and an index that stays honest when another program gets in between."""

from __future__ import annotations

import imaplib
import marshal
import os
import re
import threading
import time

from mailsuite.imap.literal import STREAM_FROM
from tests.conftest import DEFAULT_PASSWORD, RunningServer
from tests.imap.conftest import IMAP_ONLY, USER, Raw, message
from tests.reactor_disk import ReactorDiskWatch, reactor_thread


def _body(i: int, size: int = 0) -> bytes:
    """A stored message (LF line ends), `size` bytes or so when given."""
    head = f"From: bob@example.test\nSubject: m{i}\nMessage-ID: <{i}@example.test>\n\n"
    body = f"line {i}\n" * max(1, (size - len(head)) // 8)
    return (head + body).encode()


def _fill(maildir, n: int, info: str = "", big: tuple[int, ...] = ()) -> list[bytes]:
    """`n` messages written into cur/ as another Maildir program would (the numbers in `big`
    above the streaming size), the folder's mtimes set back so they prove it unchanged;
    their bytes, oldest first."""
    bodies = []
    for i in range(1, n + 1):
        data = _body(i, STREAM_FROM + 4096 if i in big else 0)
        wire = len(data) + data.count(b"\n")
        key = f"{1_700_000_000 + i}.M{i}P1Q{i}.test,S={len(data)},W={wire}"
        (maildir / "cur" / f"{key}:2,{info}").write_bytes(data)
        bodies.append(data)
    _backdate(maildir)
    return bodies


def _backdate(maildir) -> None:
    past = time.time() - 60
    for sub in ("", "/cur", "/new", "/tmp"):
        os.utime(f"{maildir}{sub}", (past, past))


def _infos(maildir) -> list[str]:
    """The info letters of every message file, by delivery order."""
    names = sorted(os.listdir(maildir / "cur"), key=lambda n: int(n.split(".")[0]))
    return [n.partition(":2,")[2] for n in names]


def _ok(lines: list[bytes]) -> list[bytes]:
    assert lines[-1].split(b" ")[1] == b"OK", lines[-1]
    return lines


def _events(events) -> str:
    return "disk work on the reactor:\n" + "\n".join(map(str, events))


def _server(server_factory, messages: int, **fill):
    """A server whose user's INBOX holds `messages` files (`_fill`): (server, mailbox,
    bodies)."""
    srv = server_factory(auth={"plaintext": "loopback"}, listen=IMAP_ONLY)
    srv.add_user(USER)
    mbox = srv.mailbox(USER)
    return srv, mbox, _fill(mbox.path, messages, **fill)


def _selected(srv, loaded=()) -> Raw:
    """A session logged in with INBOX selected, after selecting the folders `loaded` (so that
    they are in memory)."""
    r = Raw(srv.port("imap"))
    r.login()
    for name in (*loaded, "INBOX"):
        _ok(r.cmd(b"SELECT " + name.encode()))
    return r


def test_store_fetch_copy_move_expunge_and_close_leave_the_files_to_the_durable_pool(
    server_factory,
):
    srv, mbox, _ = _server(server_factory, 8)
    r = Raw(srv.port("imap"))
    r.login()
    _ok(r.cmd(b"SELECT Archive"))  # loaded before: a first load is SELECT's business
    _ok(r.cmd(b"SELECT INBOX"))
    _ok(r.cmd(b"FETCH 8 BODY.PEEK[HEADER]"))  # the parsed cache's database, made once
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        _ok(r.cmd(b"STORE 1:2 +FLAGS (\\Flagged)"))
        _ok(r.cmd(b"STORE 2 +FLAGS ($Travel)"))  # a new keyword: dovecot-keywords written
        fetched = _ok(r.cmd(b"FETCH 1 BODY[]"))  # the implicit \Seen
        _ok(r.cmd(b"COPY 1:2 Archive"))
        _ok(r.cmd(b"MOVE 3 Archive"))
        _ok(r.cmd(b"STORE 3:4 +FLAGS.SILENT (\\Deleted)"))
        expunged = _ok(r.cmd(b"EXPUNGE"))
        _ok(r.cmd(b"STORE 5 +FLAGS.SILENT (\\Deleted)"))
        _ok(r.cmd(b"CLOSE"))
    r.close()
    assert not events, _events(events)
    assert any(b"\\Seen" in line for line in fetched)
    assert [line for line in expunged if line.endswith(b" EXPUNGE")] == [
        b"* 4 EXPUNGE",
        b"* 3 EXPUNGE",
    ]
    # The disk says what the replies said: 8 - 1 moved - 2 expunged - 1 closed.
    assert _infos(mbox.path) == ["FS", "Fa", "", ""]
    assert (mbox.path / "dovecot-keywords").read_text() == "0 $Travel\n"
    assert sorted(_infos(mbox.path / ".Archive")) == ["", "FS", "Fa"]


def test_expunge_answers_once_every_file_is_gone(server_factory):
    """2,500 messages take several batches in the pool: the tagged OK waits for the last."""
    srv, mbox, _ = _server(server_factory, 2500, info="T")
    r = _selected(srv)
    lines = _ok(r.cmd(b"EXPUNGE"))
    left = os.listdir(mbox.path / "cur")
    assert len(lines) == 2501 and left == []
    r.close()


def test_close_of_many_messages_answers_once_every_file_is_gone(server_factory):
    srv, mbox, _ = _server(server_factory, 4500, info="T")
    r = _selected(srv)
    # RFC 3501 §6.4.2: no untagged EXPUNGE responses, the selection ends.
    assert _ok(r.cmd(b"CLOSE")) == [b"t OK CLOSE completed"]
    assert os.listdir(mbox.path / "cur") == []
    assert r.cmd(b"FETCH 1 FLAGS")[-1].startswith(b"t BAD")
    r.close()


def test_reads_and_copies_follow_a_rename_still_queued(server_factory):
    """While a STORE's renames wait in the folder's queue, another session's FETCH BODY[]
    (the small messages read whole, the big one streamed) and COPY (hard links) find every
    file under its old name; the STORE's reply waits for its renames."""
    srv, mbox, bodies = _server(server_factory, 3, big=(2,))
    a, b = _selected(srv), _selected(srv, loaded=("Archive",))
    inbox = srv.call(mbox.folder, "INBOX")
    with inbox._ops.lock:  # the pool's batch waits: the renames stay queued
        a.send(b"s STORE 1:3 +FLAGS (\\Flagged)\r\n")
        for _ in range(100):
            if srv.call(lambda: all("\\Flagged" in m.flags for m in inbox.messages)):
                break
            time.sleep(0.01)
        b.send(b"f FETCH 1:3 BODY.PEEK[]\r\n")
        b.sock.settimeout(20)
        fetched = b"\r\n".join(b.until_tagged(b"f")) + b.buf
        copied = _ok(b.cmd(b"COPY 1:3 Archive"))
        still = _infos(mbox.path)
        a.sock.setblocking(False)
        try:
            early = a.sock.recv(1 << 16)
        except BlockingIOError:
            early = b""
        a.sock.setblocking(True)
    assert still == ["", "", ""]  # the renames had not run yet
    assert b"s OK" not in early  # nor had the STORE answered
    assert b"f OK" in fetched and b"NIL" not in fetched
    for data in bodies:
        assert data.replace(b"\n", b"\r\n") in fetched
    assert b"[COPYUID " in copied[-1]
    a.buf += early
    _ok(a.until_tagged(b"s"))
    assert _infos(mbox.path) == ["F", "F", "F"]
    archive = mbox.path / ".Archive" / "cur"
    copies = sorted(archive.iterdir(), key=lambda p: p.name)
    assert sorted(p.read_bytes() for p in copies) == sorted(bodies)
    assert [p.name.partition(":2,")[2] for p in copies] == ["F", "F", "F"]
    for r in (a, b):
        r.close()


def _flags_of(r: Raw) -> list[set[bytes]]:
    lines = _ok(r.cmd(b"FETCH 1:* (FLAGS)"))[:-1]
    return [set(re.search(rb"FLAGS \(([^)]*)\)", line).group(1).split()) for line in lines]


def test_two_sessions_racing_store_fetch_and_copy_lose_no_flag_and_no_message(
    server_factory, tmp_path
):
    srv, mbox, bodies = _server(server_factory, 400)
    a, b = _selected(srv), _selected(srv, loaded=("Archive",))
    # Sent together: the server interleaves them, each STORE in steps.
    a.send(b"a1 STORE 1:* +FLAGS.SILENT (\\Flagged)\r\na2 STORE 1:* -FLAGS.SILENT (\\Draft)\r\n")
    b.send(
        b"b1 FETCH 1:* BODY[]\r\nb2 STORE 1:* +FLAGS.SILENT (\\Answered)\r\nb3 COPY 1:* Archive\r\n"
    )
    _ok(a.until_tagged(b"a1"))
    _ok(a.until_tagged(b"a2"))
    b.sock.settimeout(30)
    fetched = b"\r\n".join(_ok(b.until_tagged(b"b1")))
    _ok(b.until_tagged(b"b2"))
    _ok(b.until_tagged(b"b3"))
    assert fetched.count(b"BODY[] {") == 400 and b"NIL" not in fetched
    want = {b"\\Flagged", b"\\Answered", b"\\Seen"}
    assert all(want <= f for f in _flags_of(a))
    assert _infos(mbox.path) == ["FRS"] * 400
    archive = mbox.path / ".Archive" / "cur"
    assert sorted(p.read_bytes() for p in archive.iterdir()) == sorted(bodies)
    for r in (a, b):
        r.close()
    # Index and file names agree after a restart.
    srv.stop()
    again = RunningServer(srv.root, {"auth": {"plaintext": "loopback"}, "listen": IMAP_ONLY})
    try:
        r = Raw(again.port("imap"))
        r.login()
        _ok(r.cmd(b"SELECT INBOX"))
        assert all(want <= f for f in _flags_of(r))
        r.close()
    finally:
        again.stop()


def test_an_expunged_message_never_comes_back_through_a_listing(server_factory):
    """A listing taken while the unlinks are still queued would find the files there: it runs
    after them.  Another session listing the folder meanwhile (CHECK), with a delivery from
    another program in it, sees the count go down, never back up."""
    srv, mbox, _ = _server(server_factory, 2500, info="T")
    a, b = _selected(srv), _selected(srv)
    a.send(b"x EXPUNGE\r\n")
    data = message(9999)
    (mbox.path / "new" / f"{int(time.time())}.M1P2Q3.other").write_bytes(data)
    counts = []
    done = False
    while not done:
        for line in _ok(b.cmd(b"CHECK", b"n")):  # a listing each time
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                counts.append(int(m.group(1)))
        a.sock.setblocking(False)
        try:
            a.buf += a.sock.recv(1 << 20)
        except BlockingIOError:
            pass
        a.sock.setblocking(True)
        done = b"\r\nx OK" in a.buf
    assert all(n <= 2501 for n in counts), counts
    _ok(a.until_tagged(b"x"))
    assert _ok(b.cmd(b"UID SEARCH ALL"))[0] == b"* SEARCH 2501"
    inbox = srv.call(mbox.folder, "INBOX")

    def list_now():  # one more listing on top, from the reactor, as a refresh makes it
        d = srv.services.store.io.submit(inbox.listing_job())
        d.addCallback(inbox.apply_listing)
        return d.addCallback(lambda _: [m.uid for m in inbox.messages])

    assert srv.call(list_now) == [2501]
    for r in (a, b):
        r.close()


def test_a_listing_asked_for_with_unlinks_queued_waits_for_them(server_factory):
    """The store's own way: expunge, then at once a listing job, both from one reactor turn:
    the listing runs the unlinks queued before it first, so nothing comes back."""
    srv, mbox, _ = _server(server_factory, 3000, info="T")
    inbox = srv.call(mbox.folder, "INBOX")
    io = srv.services.store.io

    def expunge_and_list():
        mbox.expunge(inbox, list(inbox.messages))
        inbox._dir_sig = ()  # as if another program had changed the folder: a full listing
        d = io.submit(inbox.listing_job())
        d.addCallback(inbox.apply_listing)
        return d.addCallback(lambda _: len(inbox.messages))

    assert srv.call(expunge_and_list) == 0
    srv.call(inbox.when_written)
    assert os.listdir(mbox.path / "cur") == []
    assert srv.call(lambda: len(inbox.messages)) == 0


def test_a_file_removed_by_another_program_before_its_rename_leaves_an_honest_index(
    server_factory,
):
    srv, mbox, _ = _server(server_factory, 3)
    r = _selected(srv)
    inbox = srv.call(mbox.folder, "INBOX")
    victim = sorted(os.listdir(mbox.path / "cur"))[1]
    with inbox._ops.lock:
        r.send(b"s STORE 2 +FLAGS (\\Flagged)\r\n")
        for _ in range(100):
            if srv.call(lambda: "\\Flagged" in inbox.by_uid(2).flags):
                break
            time.sleep(0.01)
        os.unlink(mbox.path / "cur" / victim)  # another program, between queue and rename
    r.until_tagged(b"s")
    for _ in range(200):  # the failed rename owes a listing: it runs in the pool
        if srv.call(lambda: [m.uid for m in inbox.messages]) == [1, 3]:
            break
        time.sleep(0.01)
    assert srv.call(lambda: [m.uid for m in inbox.messages]) == [1, 3]
    lines = _ok(r.cmd(b"NOOP"))
    assert b"* 2 EXPUNGE" in lines
    assert _ok(r.cmd(b"UID SEARCH ALL"))[0] == b"* SEARCH 1 3"
    r.close()


def test_renames_queued_at_shutdown_are_done_before_the_process_exits(server_factory):
    """Batches not yet handed to the pool when the server stops are run by the stop itself;
    after a restart the index and the file names both carry the flags."""
    srv, mbox, _ = _server(server_factory, 2500)
    inbox = srv.call(mbox.folder, "INBOX")
    msgs = srv.call(lambda: list(inbox.messages))
    with inbox._ops.lock:  # the first batch waits in the pool; the others are not sent yet
        srv.call(inbox.store_flags, msgs, {"\\Flagged"}, "add")
        assert _infos(mbox.path) == [""] * 2500
        stopping = threading.Thread(target=srv.stop)
        stopping.start()
        time.sleep(0.3)
    stopping.join(30)
    assert not stopping.is_alive()
    assert _infos(mbox.path) == ["F"] * 2500
    again = RunningServer(srv.root, {"auth": {"plaintext": "loopback"}, "listen": IMAP_ONLY})
    try:
        c = imaplib.IMAP4("127.0.0.1", again.port("imap"), timeout=10)
        c.login(USER, DEFAULT_PASSWORD)
        c.select("INBOX")
        typ, data = c.search(None, "UNFLAGGED")
        assert typ == "OK" and data == [b""]
        c.logout()
    finally:
        again.stop()


def test_the_saved_index_of_a_folder_with_operations_queued_lists_it_at_the_next_open(
    server_factory,
):
    """An index image taken while renames are queued carries no directory signature: were
    the process to die before they ran, the next open lists the folder instead of trusting
    names that are not on disk."""
    srv, mbox, _ = _server(server_factory, 3)
    inbox = srv.call(mbox.folder, "INBOX")
    msgs = srv.call(lambda: list(inbox.messages))
    with inbox._ops.lock:
        srv.call(inbox.store_flags, msgs, {"\\Flagged"}, "add")
        image = srv.call(inbox.index_image)
    sig = marshal.loads(image[1])[3]
    assert sig[:2] == [0, 0]
    srv.call(inbox.when_written)


def test_a_poll_of_a_folder_with_operations_queued_is_answered_without_waiting_for_them(
    server_factory,
):
    """A NOOP from another session while the folder's renames are still queued answers from
    the index (our own changes are in it); what another program did meanwhile shows on a
    later poll, once the queue is done."""
    srv, mbox, _ = _server(server_factory, 3)
    a, b = _selected(srv), _selected(srv)
    inbox = srv.call(mbox.folder, "INBOX")
    time.sleep(1.0)  # past the refresh interval: B's NOOP looks at the disk
    with inbox._ops.lock:
        a.send(b"s STORE 1:3 +FLAGS (\\Flagged)\r\n")
        for _ in range(100):
            if srv.call(lambda: inbox.file_ops_pending):
                break
            time.sleep(0.01)
        (mbox.path / "new" / f"{int(time.time())}.M7P8Q9.other").write_bytes(message(4))
        b.sock.settimeout(5)
        polled = _ok(b.cmd(b"NOOP", b"n"))
    assert sum(b"FLAGS (\\Flagged)" in line for line in polled) == 3
    assert not any(line.endswith(b" EXISTS") for line in polled)
    _ok(a.until_tagged(b"s"))
    time.sleep(1.0)
    assert b"* 4 EXISTS" in _ok(b.cmd(b"NOOP", b"n"))
    for r in (a, b):
        r.close()
