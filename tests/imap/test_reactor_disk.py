"""The reactor never waits on the disk: the mailbox commands (CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, STATUS, LIST-STATUS, NOTIFY, and SELECT of a folder not
loaded yet) do their writes, removals and directory listings in the durable pool.  An audit
hook watches the reactor thread while a real client runs them over a real socket."""

from __future__ import annotations

import imaplib
import os
import re
import smtplib
import time

import pytest

from mailsuite.imap.commands.mailbox import LIST_PER_TURN
from mailsuite.store.names import to_dirname
from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import USER, Raw, answered_in_turns, message
from tests.reactor_disk import ReactorDiskWatch, reactor_thread


@pytest.fixture
def watch():
    return ReactorDiskWatch.get()


def _backdate(root, name: str) -> None:
    """As if nobody had touched the folder for a while: its mtimes prove it unchanged."""
    past = time.time() - 60
    base = root if name == "INBOX" else root / to_dirname(name)
    for sub in ("", "/cur", "/new", "/tmp"):
        os.utime(f"{base}{sub}", (past, past))


def _ok(result) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def test_the_watch_sees_a_write_on_the_reactor(imap_server, watch, tmp_path):
    """The hook itself: a file written on the reactor thread inside the window is caught."""
    with watch.window(reactor_thread()) as events:
        imap_server.call(lambda: (tmp_path / "x").write_bytes(b"x"))
    assert [e.event for e in events] == ["open"]
    with watch.window(reactor_thread()) as events:
        imap_server.call(os.listdir, tmp_path)
    assert [e.event for e in events] == ["os.listdir"]


def test_mailbox_commands_leave_the_disk_to_the_durable_pool(imap_server, watch):
    mbox = imap_server.mailbox(USER)
    for name in ("Old/A", "Old/B"):
        imap_server.call(mbox.create_folder, name)
    mbox.deliver(message(1), "Old/A")
    for name in ("Old/A", "Old/B"):
        _backdate(mbox.path, name)
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    with watch.window(reactor_thread()) as events:
        assert b"[MAILBOXID (" in _ok(c.create("Work/Sub"))[0]
        _ok(c._simple_command("CREATE", "Plans", "(USE (\\Drafts))"))
        typ, data = c.create("Work/Sub")
        assert typ == "NO" and b"[ALREADYEXISTS]" in data[0]
        _ok(c.subscribe("Work/Sub"))
        _ok(c.unsubscribe("Work/Sub"))
        _ok(c.subscribe("Work"))
        listed = b"\n".join(_ok(c.list()))
        for name in (b"Work/Sub", b"Plans", b"Old/A", b"INBOX"):
            assert b'"/" ' + name + b"\n" in listed + b"\n"
        assert b"(\\HasNoChildren \\Drafts)" in listed
        assert b'"/" Work' in b"\n".join(_ok(c.lsub()))
        status = _ok(c.status("Old/A", "(MESSAGES UIDNEXT)"))
        assert status == [b"Old/A (MESSAGES 1 UIDNEXT 2)"]
        assert _ok(c.select("Old/B", readonly=True)) == [b"0"]  # a cold folder too
        _ok(c.unselect())
        typ, data = c._simple_command("LIST", '"Old/"', '"*"', "RETURN", "(STATUS (MESSAGES))")
        assert typ == "OK"
        statuses = c.untagged_responses.pop("STATUS", [])
        c.untagged_responses.pop("LIST", None)
        assert sorted(statuses) == [b"Old/A (MESSAGES 1)", b"Old/B (MESSAGES 0)"]
        _ok(c.rename("Work", "Job"))
        typ, data = c.rename("Nowhere", "Else")
        assert typ == "NO" and b"[NONEXISTENT]" in data[0]
        _ok(c.delete("Job/Sub"))
        _ok(c.delete("Old/A"))
        typ, data = c.delete("Old/A")
        assert typ == "NO" and b"[NONEXISTENT]" in data[0]
        listed = b"\n".join(_ok(c.list()))
        assert b'"/" Job\n' in listed and b" Work" not in listed and b" Old/A" not in listed
        assert b'"/" Job' in b"\n".join(_ok(c.lsub()))  # the subscription followed the RENAME
    c.logout()
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))


def test_notify_set_status_reads_the_tree_and_cold_folders_in_the_durable_pool(imap_server, watch):
    mbox = imap_server.mailbox(USER)
    imap_server.call(mbox.create_folder, "Lists/Cold")
    mbox.deliver(message(1), "Lists/Cold")
    for name in mbox.list_folders():  # the default ones too: "personal" reports them all
        _backdate(mbox.path, name)
    r = Raw(imap_server.port("imap"))
    r.login()
    with watch.window(reactor_thread()) as events:
        lines = r.cmd(b"NOTIFY SET STATUS (personal (MessageNew MessageExpunge))", b"n")
    assert lines[-1] == b"n OK NOTIFY completed"
    assert b"* STATUS Lists/Cold (MESSAGES 1 UIDNEXT 2 UIDVALIDITY" in b"\n".join(lines)
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    r.close()


def test_delete_empties_the_folder_for_a_session_that_has_it_selected(imap_server):
    mbox = imap_server.mailbox(USER)
    imap_server.call(mbox.create_folder, "Doomed")
    for i in range(3):
        mbox.deliver(message(i), "Doomed")
    watcher = Raw(imap_server.port("imap"))
    watcher.login()
    assert any(b"3 EXISTS" in line for line in watcher.cmd(b"SELECT Doomed"))
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    _ok(c.delete("Doomed"))
    lines = watcher.cmd(b"NOOP", b"n")
    assert sorted(lines[:-1]) == [b"* 1 EXPUNGE", b"* 2 EXPUNGE", b"* 3 EXPUNGE"], lines
    assert lines[-1] == b"n OK NOOP completed"
    assert imap_server.call(mbox.quota).used_messages == 0
    c.logout()
    watcher.close()


def test_list_of_many_folders_lets_another_connection_in_between(imap_server):
    mbox = imap_server.mailbox(USER)
    folders = 4 * LIST_PER_TURN

    def make():
        for i in range(folders):
            mbox.create_folder(f"Many/f{i:05d}")

    imap_server.call(make)
    r = Raw(imap_server.port("imap"))
    r.login()
    other = Raw(imap_server.port("imap"))
    other.login()
    # The NOOP is answered while the LIST still has most of its names to do.
    lines = answered_in_turns(r, other, b'LIST "" "*"')
    assert sum(line.startswith(b'* LIST (\\HasNoChildren) "/" Many/f') for line in lines) == (
        folders
    )
    assert b'* LIST (\\Noselect \\HasChildren) "/" Many' in lines  # implied by its children
    other.close()
    r.close()


def _drop(root, name: str, info: str = "") -> None:
    """Another program's delivery: a file written into tmp/ and renamed into new/ (or cur/)."""
    tmp = root / "tmp" / name
    tmp.write_bytes(message(9).replace(b"\r\n", b"\n"))
    tmp.rename(root / ("cur" if info else "new") / (name + info))


def test_folders_changed_moments_ago_are_listed_in_the_durable_pool(imap_server, watch):
    """SELECT, STATUS, NOOP, CHECK and the IDLE poll of a folder whose directories changed
    within the mtime slack (or behind the index's back) list it in the pool, and show what
    the listing found as before."""
    mbox = imap_server.mailbox(USER)
    for i in range(3):
        mbox.deliver(message(i))
    root = mbox.path
    a = Raw(imap_server.port("imap"))
    a.login()
    assert any(line == b"* 3 EXISTS" for line in a.cmd(b"SELECT INBOX"))
    b = Raw(imap_server.port("imap"))
    b.login()
    idler = Raw(imap_server.port("imap"))
    idler.login()
    with watch.window(reactor_thread()) as events:
        _drop(root, "100.dropped.host")
        assert any(line == b"* 4 EXISTS" for line in idler.cmd(b"SELECT INBOX"))
        _drop(root, "101.dropped.host")
        lines = b.cmd(b"STATUS INBOX (MESSAGES)")
        assert lines[0] == b"* STATUS INBOX (MESSAGES 5)", lines
        idler.send(b"i IDLE\r\n")
        told = [idler.line() for _ in range(3)]  # STATUS's listing, told before IDLE begins
        assert told == [b"* 5 EXISTS", b"* 2 RECENT", b"+ idling"], told
        _drop(root, "102.dropped.host", ":2,S")
        idler.sock.settimeout(3)
        assert idler.line() == b"* 6 EXISTS"  # the IDLE poll, once a second
        assert idler.line() == b"* 3 RECENT"
        time.sleep(1)  # NOOP checks the disk at most once in REFRESH_INTERVAL
        lines = a.cmd(b"NOOP", b"n")
        assert b"* 6 EXISTS" in lines and lines[-1] == b"n OK NOOP completed", lines
        _drop(root, "103.dropped.host")
        lines = a.cmd(b"CHECK", b"c")
        assert b"* 7 EXISTS" in lines and lines[-1] == b"c OK CHECK completed", lines
        lines = a.cmd(b"UID FETCH 1:* (FLAGS)", b"f")
        assert sum(b"FETCH (UID" in line for line in lines) == 7
        idler.send(b"DONE\r\n")
        assert idler.until_tagged(b"i")[-1] == b"i OK IDLE completed"
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    for r in (a, b, idler):
        r.close()


def test_a_delivery_into_an_idled_folder_is_indexed_without_listing_it(full_server, watch):
    """What SMTP delivers into a folder a session has open reaches the index (and IDLE) from
    the delivery itself: no listing of the folder, and no uidlist write, on the reactor."""
    mbox = full_server.mailbox(USER)
    for i in range(3):
        mbox.deliver(message(i))
    _backdate(mbox.path, "INBOX")
    idler = Raw(full_server.port("imap"))
    idler.login()
    assert any(line == b"* 3 EXISTS" for line in idler.cmd(b"SELECT INBOX"))
    idler.send(b"i IDLE\r\n")
    assert idler.line() == b"+ idling"
    idler.sock.settimeout(3)
    with smtplib.SMTP("127.0.0.1", full_server.port("smtp"), timeout=10) as s:
        with watch.window(reactor_thread()) as events:
            for n in (4, 5, 6):
                s.sendmail("bob@example.net", [USER], message(n))
                assert idler.line() == b"* %d EXISTS" % n
                assert idler.line() == b"* %d RECENT" % n  # the first three were in new/
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    idler.send(b"DONE\r\n")
    assert idler.until_tagged(b"i")[-1] == b"i OK IDLE completed"
    lines = idler.cmd(b"UID FETCH 1:* (UID)", b"f")
    assert [line.split(b"UID ")[1] for line in lines[:-1]] == [
        b"1)",
        b"2)",
        b"3)",
        b"4)",
        b"5)",
        b"6)",
    ]
    idler.close()


def test_append_and_copy_give_uids_in_the_durable_pool(imap_server, watch):
    """APPEND's new message and COPY's copies get their UIDs (the uidlist appended) where
    their files were written, in the pool; the reactor only indexes them."""
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    _ok(c.select("Archive"))  # loaded before: a first load is SELECT's business
    _ok(c.select("INBOX"))
    with watch.window(reactor_thread()) as events:
        for i in range(3):
            data = _ok(c.append("INBOX", "(\\Seen)", None, message(i)))
            assert b"[APPENDUID " in data[0] and data[0].split()[2] == b"%d]" % (i + 1)
        _ok(c.noop())
        data = _ok(c._simple_command("UID", "COPY", "1:3", "Archive"))
        assert b"[COPYUID " in data[0] and data[0].split()[3] == b"1:3]", data
        status = _ok(c.status("Archive", "(MESSAGES UIDNEXT)"))
        assert status == [b"Archive (MESSAGES 3 UIDNEXT 4)"]
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    c.logout()


def test_append_to_a_folder_not_in_memory_loads_it_in_the_durable_pool(imap_server, watch):
    """Thunderbird APPENDs each sent message to Sent, often never selected since the server
    started: the folder's first load (a listing, its uidlist written) and the new message's
    UID are done in the pool, and APPENDUID names that UID."""
    mbox = imap_server.mailbox(USER)
    imap_server.call(mbox.create_folder, "Outbox")
    for n in range(3):
        imap_server.call(mbox.deliver, message(n), "Outbox")
    _backdate(mbox.path, "Outbox")
    assert not imap_server.call(mbox.is_loaded, "Outbox")
    c = imaplib.IMAP4("127.0.0.1", imap_server.port("imap"), timeout=10)
    _ok(c.login(USER, DEFAULT_PASSWORD))
    with watch.window(reactor_thread()) as events:
        typ, data = c.append("Outbox", "(\\Seen $Sent)", None, message(9))
        appended = c.append("Outbox", None, None, message(10))
    assert typ == "OK", data
    assert re.match(rb"\[APPENDUID \d+ 4\]", data[0]), data
    assert re.match(rb"\[APPENDUID \d+ 5\]", appended[1][0]), appended
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    _ok(c.select("Outbox"))
    typ, data = c.uid("FETCH", "4:5", "(FLAGS)")
    assert b"\\Seen" in data[0] and b"$Sent" in data[0] and b"\\Seen" not in data[1], data
    c.logout()
