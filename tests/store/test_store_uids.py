"""UIDs, UIDVALIDITY and flags: stable across restarts (a new process) and flag changes; changes
made by other programs are picked up on the next access; subscribers hear about all of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mailsuite.store import Store
from mailsuite.store.folder import FolderEvent

REPO = Path(__file__).resolve().parents[2]

SNAPSHOT = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
f = Store(Path(sys.argv[1])).mailbox("alice@example.test").folder(sys.argv[3])
print(json.dumps({"uidvalidity": f.uidvalidity, "uidnext": f.uidnext,
                  "messages": [[m.uid, m.key, sorted(m.flags), m.size] for m in f.messages]}))
f.save_index()
"""


def snapshot(root: Path, folder: str = "INBOX") -> dict:
    """The folder as a brand-new process sees it."""
    out = subprocess.run(
        [sys.executable, "-c", SNAPSHOT, str(root), str(REPO), folder],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_uids_survive_a_restart_in_a_new_process(store, mbox):
    keys = [mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode()) for i in range(5)]
    folder = mbox.folder("INBOX")
    ours = [[m.uid, m.key, sorted(m.flags), m.size] for m in folder.messages]
    assert [m[0] for m in ours] == [1, 2, 3, 4, 5]
    assert [m[1] for m in ours] == keys
    folder.save_index()
    first = snapshot(store.root)
    assert first["messages"] == ours
    assert first["uidvalidity"] == folder.uidvalidity and first["uidnext"] == 6
    # And again without our index (only dovecot-uidlist): still the same UIDs.
    (mbox.path / "mailsuite-index").unlink()
    assert snapshot(store.root)["messages"] == ours


def test_flag_changes_keep_uids_and_survive_restarts(store, mbox):
    for i in range(3):
        mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode())
    folder = mbox.folder("INBOX")
    m1, m2, m3 = folder.messages
    start = folder.highestmodseq
    changed, refused = folder.store_flags([m1, m3], {"\\Seen", "$Label1"}, "add")
    assert [m.uid for m in changed] == [1, 3] and refused == []
    assert m1.modseq > start and folder.highestmodseq >= m3.modseq
    folder.store_flags([m3], {"\\Seen"}, "remove")
    folder.store_flags([m2], {"\\Flagged", "\\Answered", "\\Deleted", "\\Draft"}, "set")
    # The file names carry the flags: cur/<key>:2,<letters>, keywords as letters a-z.
    names = sorted(os.listdir(mbox.path / "cur"))
    assert names == sorted([m1.key + ":2,Sa", m2.key + ":2,DFRT", m3.key + ":2,a"])
    assert (mbox.path / "dovecot-keywords").read_text() == "0 $Label1\n"
    folder.save_index()
    snap = snapshot(store.root)
    assert [(m[0], m[2]) for m in snap["messages"]] == [
        (1, ["$Label1", "\\Seen"]),
        (2, ["\\Answered", "\\Deleted", "\\Draft", "\\Flagged"]),
        (3, ["$Label1"]),
    ]
    # RFC 7162 §3.1.3: UNCHANGEDSINCE below a message's modseq refuses the change.
    changed, refused = folder.store_flags([m1], {"\\Flagged"}, "add", unchanged_since=start)
    assert changed == [] and refused == [m1]


def test_expunged_uids_are_never_reused(store, mbox):
    for i in range(3):
        mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode())
    folder = mbox.folder("INBOX")
    assert mbox.expunge(folder, [folder.messages[-1]]) == [3]
    folder.save_index()
    mbox.deliver(b"Subject: after\r\n\r\nx\r\n")
    folder.refresh(force=True)
    assert [m.uid for m in folder.messages] == [1, 2, 4]
    assert snapshot(store.root)["uidnext"] == 5


def test_changes_by_other_programs_are_picked_up_and_announced(store, mbox):
    mbox.deliver(b"Subject: one\r\n\r\n1\r\n")
    mbox.deliver(b"Subject: two\r\n\r\n2\r\n")
    folder = mbox.folder("INBOX")
    events: list[FolderEvent] = []
    folder.add_listener(events.append)

    # Another MDA drops a file into new/ (no ,S= in its name: size from the file).
    (mbox.path / "new" / "1700000000.M1P1.otherhost").write_bytes(b"Subject: three\n\nbody\n")
    folder.refresh()
    assert [m.uid for m in folder.messages] == [1, 2, 3]
    assert folder.by_uid(3).size == len(b"Subject: three\n\nbody\n")
    assert events[-1] == FolderEvent("exists", (3,), None)

    # A flag changed by renaming (as mutt or Dovecot would).
    first = folder.by_uid(1)
    old = mbox.path / "new" / first.filename
    os.rename(old, mbox.path / "cur" / (first.key + ":2,FS"))
    folder.refresh()
    assert folder.by_uid(1).flags == {"\\Flagged", "\\Seen"}
    assert events[-1] == FolderEvent("flags", (1,), None)

    # A file removed behind our back.
    os.unlink(folder.message_path(folder.by_uid(2)))
    folder.refresh()
    assert [m.uid for m in folder.messages] == [1, 3]
    assert events[-1] == FolderEvent("expunge", (2,), None)

    # And a new process agrees.
    folder.save_index()
    assert [m[0] for m in snapshot(store.root)["messages"]] == [1, 3]


def test_reading_follows_a_rename_made_by_another_program(mbox):
    mbox.deliver(b"Subject: one\r\n\r\nbody\r\n")
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    os.rename(folder.message_path(msg), mbox.path / "cur" / (msg.key + ":2,S"))
    assert folder.read(msg) == b"Subject: one\n\nbody\n"
    assert folder.by_uid(1).flags == {"\\Seen"}


def test_subscribers_hear_of_their_own_and_others_changes_with_source(mbox):
    mbox.deliver(b"Subject: one\r\n\r\n1\r\n")
    folder = mbox.folder("INBOX")
    a, b = [], []
    folder.add_listener(a.append)
    folder.add_listener(b.append)
    session = object()
    folder.store_flags(folder.messages, {"\\Seen"}, "add", source=session)
    assert a == b == [FolderEvent("flags", (1,), session)]
    key = mbox.deliver(b"Subject: two\r\n\r\n2\r\n")
    folder.refresh(force=True)
    assert a[-1] == FolderEvent("exists", (folder.uid_of_key(key),), None)
    folder.remove_listener(b.append)
    mbox.expunge(folder, folder.messages[:1], source=session)
    assert a[-1] == FolderEvent("expunge", (1,), session)
    assert len(b) == 2


def test_the_folder_object_is_shared_and_notify_delivery_wakes_it(store, mbox):
    folder = mbox.folder("INBOX")
    assert store.mailbox("alice@example.test").folder("inbox") is folder
    events = []
    folder.add_listener(events.append)
    mbox.deliver(b"Subject: one\r\n\r\n1\r\n")
    store.notify_delivery("ALICE@example.test", "INBOX")
    assert events == [FolderEvent("exists", (1,), None)]


def test_many_files_indexed_at_once_keep_their_uids_in_the_uidlist(store, mbox):
    """A first scan assigning thousands of UIDs at once (an adopted Maildir without uidlist,
    a big rsync) must record every one in dovecot-uidlist: a new process without our index, or
    Dovecot, must see the same UIDs."""
    data = b"Subject: x\n\nbody\n"
    for i in range(2500):
        name = f"{1600000000 + i}.M{i}P1.otherhost,S={len(data)},W={len(data) + 3}"
        (mbox.path / "new" / name).write_bytes(data)
    folder = mbox.folder("INBOX")
    ours = [[m.uid, m.key] for m in folder.messages]
    assert [u for u, _ in ours] == list(range(1, 2501))
    lines = (mbox.path / "dovecot-uidlist").read_text().splitlines()
    assert len(lines) == 1 + 2500
    (mbox.path / "mailsuite-index").unlink(missing_ok=True)
    assert [m[:2] for m in snapshot(store.root)["messages"]] == ours


def test_uidlist_adopted_from_the_index_still_gives_unique_uids(store, mbox):
    """A folder opened from its index parses dovecot-uidlist only when a new file needs a UID,
    and then sees what other processes assigned meanwhile."""
    for i in range(3):
        mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode())
    first = mbox.folder("INBOX")
    first.save_index()
    lazy = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert (lazy.uidvalidity, lazy.uidnext) == (first.uidvalidity, 4)
    # Another process assigns UID 4 after our open...
    other = Store(store.root).mailbox("alice@example.test")
    k4 = other.deliver(b"Subject: 4\r\n\r\n4\r\n")
    other.folder("INBOX").refresh(force=True)
    assert other.folder("INBOX").uid_of_key(k4) == 4
    # ...so our next one gets 5, and we agree on 4.
    k5 = other.deliver(b"Subject: 5\r\n\r\n5\r\n")
    lazy.refresh(force=True)
    assert lazy.uid_of_key(k4) == 4 and lazy.uid_of_key(k5) == 5
    assert [m.uid for m in lazy.messages] == [1, 2, 3, 4, 5]


def test_uidlist_damaged_after_a_lazy_open_is_rewritten_keeping_uids(store, mbox, logs):
    keys = [mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode()) for i in range(3)]
    mbox.folder("INBOX").save_index()
    lazy = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    validity = lazy.uidvalidity
    (mbox.path / "dovecot-uidlist").write_bytes(b"\x00garbage\n")
    k4 = mbox.deliver(b"Subject: 4\r\n\r\n4\r\n")
    lazy.refresh(force=True)
    assert lazy.uidvalidity == validity
    assert [lazy.uid_of_key(k) for k in keys + [k4]] == [1, 2, 3, 4]
    assert logs.matching("rewriting it from the index")
    fresh = Store(store.root).mailbox("alice@example.test")
    (mbox.path / "mailsuite-index").unlink(missing_ok=True)
    assert [fresh.folder("INBOX").uid_of_key(k) for k in keys + [k4]] == [1, 2, 3, 4]


def test_refresh_reports_each_outside_change_once(mbox):
    for i in range(3):
        mbox.deliver(f"Subject: {i}\r\n\r\n{i}\r\n".encode())
    folder = mbox.folder("INBOX")
    events: list[FolderEvent] = []
    folder.add_listener(events.append)
    m1, m2, m3 = folder.messages
    folder.store_flags([m1], {"\\Seen"}, "add")  # our own rename: one event, then quiet
    os.rename(folder.message_path(m2), mbox.path / "cur" / (m2.key + ":2,F"))
    # A second copy of a known message (a backup tool copying new/ into cur/): not a new one.
    (mbox.path / "cur" / (m3.key + ":2,S")).write_bytes(folder.read(m3))
    for _ in range(3):
        folder.refresh(force=True)
    assert events == [FolderEvent("flags", (1,), None), FolderEvent("flags", (2,), None)]
    assert [m.uid for m in folder.messages] == [1, 2, 3]
    assert folder.by_uid(2).flags == {"\\Flagged"} and folder.by_uid(3).flags == frozenset()
    # A removed file is one expunge event.
    os.unlink(folder.message_path(m1))
    folder.refresh(force=True)
    assert events[-1] == FolderEvent("expunge", (1,), None)
    assert [m.uid for m in folder.messages] == [2, 3]
