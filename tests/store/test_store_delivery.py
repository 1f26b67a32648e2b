"""Durable delivery: tmp/, fsync, rename into new/ (or cur/ with flags), fsync the folder.

Without strace, the order shows in what other observers can see: tmp/ is empty once deliver()
returns, a file never shows up in new/ incomplete, and a write that fails half-way leaves
nothing in new/ (nor in tmp/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailsuite.store import NoSuchFolder, NoSuchMailbox, QuotaExceeded, Store
from mailsuite.store.flags import split_filename
from mailsuite.store.maildir import unique_name

REPO = Path(__file__).resolve().parents[2]


def test_new_account_has_standard_folders_with_special_use(store):
    mbox = store.create_mailbox("Bob@Example.Test")
    assert mbox.path == store.root / "example.test" / "bob"
    for sub in ("cur", "new", "tmp"):
        assert (mbox.path / sub).is_dir()
    assert mbox.list_folders() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert mbox.special_use() == {
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        assert (mbox.path / f".{name}" / "maildirfolder").exists()
        assert (mbox.path / f".{name}" / "cur").is_dir()
    assert set(mbox.subscriptions()) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    # The same mailbox object is shared by the whole process.
    assert store.mailbox("bob@example.test") is mbox


def test_unknown_mailbox_and_folder(store, mbox):
    with pytest.raises(NoSuchMailbox):
        store.mailbox("nobody@example.test")
    for bad in ("../x@example.test", "a@../etc", "noat"):
        with pytest.raises(NoSuchMailbox):
            store.mailbox(bad)
    with pytest.raises(NoSuchFolder):
        mbox.deliver(b"Subject: x\r\n\r\nx\r\n", folder="Nope")
    with pytest.raises(NoSuchFolder):
        mbox.folder("Nope")


def test_delivery_lands_in_new_complete_with_size_in_name_and_tmp_empty(mbox, make_message):
    data = make_message(1, 5000)
    key = mbox.deliver(data)
    assert os.listdir(mbox.path / "tmp") == []
    assert os.listdir(mbox.path / "new") == [key]
    stored = (mbox.path / "new" / key).read_bytes()
    # Stored with LF line ends, as Postfix and Dovecot write Maildir files.
    assert stored == data.replace(b"\r\n", b"\n")
    assert f",S={len(stored)}," in key and key.endswith(f",W={len(data)}")
    folder = mbox.folder("INBOX")
    msg = folder.by_uid(folder.uid_of_key(key))
    assert msg.size == len(stored) and msg.wire_size == len(data)
    assert msg.flags == frozenset()
    assert folder.read(msg) == stored


def test_delivery_with_flags_goes_to_cur_with_info(mbox):
    key = mbox.deliver(b"Subject: d\r\n\r\nx\r\n", folder="Drafts", flags=["\\Draft", "\\Seen"])
    assert os.listdir(mbox.path / ".Drafts" / "new") == []
    (name,) = os.listdir(mbox.path / ".Drafts" / "cur")
    assert name == key + ":2,DS"
    folder = mbox.folder("Drafts")
    assert folder.messages[0].flags == {"\\Draft", "\\Seen"}


def test_keyword_delivered_into_inbox_lands_in_cur_named_and_counted(store, mbox):
    """A flagged message in memory (what a Sieve addflag gives) goes straight to cur/ with
    its letters, the keyword named in dovecot-keywords, and counted in maildirsize."""
    key = mbox.deliver(b"Subject: k\r\n\r\nx\r\n", flags=["$Bench", "\\Seen"])
    key2 = mbox.deliver(b"Subject: k2\r\n\r\ny\r\n", flags=["$bench"])
    assert os.listdir(mbox.path / "new") == [] and os.listdir(mbox.path / "tmp") == []
    assert sorted(os.listdir(mbox.path / "cur")) == sorted([key + ":2,Sa", key2 + ":2,a"])
    assert (mbox.path / "dovecot-keywords").read_text() == "0 $Bench\n"
    folder = mbox.folder("INBOX")
    assert folder.by_uid(folder.uid_of_key(key)).flags == {"$Bench", "\\Seen"}
    # Another process (a fresh Store) reads the same count from maildirsize.
    used = Store(store.root).mailbox("alice@example.test").quota()
    assert (used.used_messages, used.used_bytes) == (2, 2 * len(b"Subject: k\n\nx\n") + 1)


def test_flagged_delivery_to_a_missing_folder_or_over_quota_leaves_nothing(mbox):
    for flags in (["$Label"], ["\\Seen"]):
        with pytest.raises(NoSuchFolder):
            mbox.deliver(b"Subject: x\r\n\r\nx\r\n", folder="Nope", flags=flags)
    assert not (mbox.path / ".Nope").exists()
    assert mbox.quota().used_messages == 0
    # The folder made afterwards starts its keyword letters afresh, from its own file.
    mbox.create_folder("Nope")
    key = mbox.deliver(b"Subject: x\r\n\r\nx\r\n", folder="Nope", flags=["$Other"])
    assert os.listdir(mbox.path / ".Nope" / "cur") == [key + ":2,a"]
    assert (mbox.path / ".Nope" / "dovecot-keywords").read_text() == "0 $Other\n"
    mbox.set_quota(0, 1)
    with pytest.raises(QuotaExceeded):
        mbox.deliver(b"Subject: y\r\n\r\ny\r\n", flags=["$Label"])
    assert os.listdir(mbox.path / "cur") == [] and os.listdir(mbox.path / "tmp") == []
    assert mbox.quota().used_messages == 1


def test_internaldate_is_kept(mbox):
    key = mbox.deliver(b"Subject: old\r\n\r\nx\r\n", internaldate=1_000_000_000)
    folder = mbox.folder("INBOX")
    assert folder.by_uid(folder.uid_of_key(key)).internaldate == 1_000_000_000


def test_files_appear_in_new_only_complete(mbox):
    """A watcher polling new/ while big messages are delivered never sees a short file."""
    stop = threading.Event()
    seen: dict[str, int] = {}
    short: list[str] = []

    def watch():
        new = mbox.path / "new"
        while not stop.is_set():
            for name in os.listdir(new):
                try:
                    size = os.stat(new / name).st_size
                except FileNotFoundError:
                    continue
                expected = int(name.split(",S=")[1].split(",")[0])
                seen[name] = size
                if size != expected:
                    short.append(name)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        body = b"Subject: big\r\n\r\n" + b"0123456789abcdef" * 65536 + b"\r\n"  # ~1 MB
        keys = [mbox.deliver(body) for _ in range(8)]
    finally:
        stop.set()
        watcher.join()
    assert short == []
    assert seen  # the watcher did look
    assert sorted(os.listdir(mbox.path / "new")) == sorted(keys)
    assert os.listdir(mbox.path / "tmp") == []


FAILING_WRITER = r"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
mbox = Store(Path(sys.argv[1])).mailbox("alice@example.test")
# Files may not grow past 64 KiB: the write of a 1 MiB message fails half-way (EFBIG).
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
try:
    mbox.deliver(b"Subject: big\r\n\r\n" + b"x" * (1 << 20) + b"\r\n")
except OSError as e:
    print("failed", e.errno)
else:
    print("delivered")
"""


def test_a_write_failing_half_way_leaves_nothing_in_new_or_tmp(store, mbox):
    mbox.deliver(b"Subject: before\r\n\r\nx\r\n")
    before = os.listdir(mbox.path / "new")
    out = subprocess.run(
        [sys.executable, "-c", FAILING_WRITER, str(store.root), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.startswith("failed"), out.stdout + out.stderr
    assert os.listdir(mbox.path / "new") == before
    assert os.listdir(mbox.path / "tmp") == []
    assert mbox.quota().used_messages == 1


def test_quota_counts_deliveries_and_refuses_over_quota(store, make_message):
    mbox = store.create_mailbox("q@example.test", quota_bytes=9_000, quota_messages=0)
    first, second = make_message(1, 4000), make_message(2, 4000)
    mbox.deliver(first)
    mbox.deliver(second)
    q = mbox.quota()
    # Counted as stored on disk (LF line ends), like the ,S= of the file names.
    stored = len(first.replace(b"\r\n", b"\n")) + len(second.replace(b"\r\n", b"\n"))
    assert (q.used_messages, q.used_bytes, q.limit_bytes) == (2, stored, 9_000)
    from mailsuite.store import QuotaExceeded

    with pytest.raises(QuotaExceeded) as info:
        mbox.deliver(make_message(3, 4000))
    assert info.value.temporary  # would fit an emptier mailbox: 452 4.2.2
    with pytest.raises(QuotaExceeded) as info:
        mbox.deliver(make_message(4, 20_000))
    assert not info.value.temporary  # larger than the whole quota: 552 5.2.2
    assert "full" in str(info.value)
    assert len(os.listdir(mbox.path / "new")) == 2
    assert os.listdir(mbox.path / "tmp") == []
    # Expunging frees room.
    folder = mbox.folder("INBOX")
    mbox.expunge(folder, folder.messages[:1])
    assert mbox.quota().used_messages == 1
    mbox.deliver(make_message(5, 4000))


def test_quota_message_count_limit(store):
    from mailsuite.store import QuotaExceeded

    mbox = store.create_mailbox("c@example.test", quota_bytes=0, quota_messages=2)
    mbox.deliver(b"Subject: 1\r\n\r\n1\r\n")
    mbox.deliver(b"Subject: 2\r\n\r\n2\r\n", folder="Sent")
    with pytest.raises(QuotaExceeded) as info:
        mbox.deliver(b"Subject: 3\r\n\r\n3\r\n")
    assert info.value.temporary


def test_quota_is_kept_without_rescans_and_survives_a_new_process(store, make_message):
    mbox = store.create_mailbox("r@example.test", quota_bytes=1_000_000)
    sizes = []
    for i in range(5):
        data = make_message(i, 1000 + i)
        mbox.deliver(data)
        sizes.append(len(data.replace(b"\r\n", b"\n")))
    lines = (mbox.path / "maildirsize").read_text().splitlines()
    assert lines[0] == "1000000S,0C"
    # One appended delta line per delivery (Maildir++), no rewrite of the whole file.
    assert len(lines) >= 1 + 5
    fresh = Store(store.root).mailbox("r@example.test").quota()
    assert fresh.used_messages == 5 and fresh.used_bytes == sum(sizes)
    assert fresh.limit_bytes == 1_000_000


def test_quota_is_shared_by_all_folders(store):
    mbox = store.create_mailbox("s@example.test")
    mbox.deliver(b"Subject: 1\r\n\r\n1\r\n")
    mbox.deliver(b"Subject: 2\r\n\r\n2\r\n", folder="Sent")
    mbox.deliver(b"Subject: 3\r\n\r\n3\r\n", folder="Archive", flags=["\\Seen"])
    assert mbox.quota().used_messages == 3


def test_many_threads_deliver_unique_files(mbox):
    keys: list[str] = []
    lock = threading.Lock()

    def worker(n):
        for i in range(25):
            k = mbox.deliver(f"Subject: {n}-{i}\r\n\r\nx\r\n".encode())
            with lock:
                keys.append(k)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 150
    assert len(os.listdir(mbox.path / "new")) == 150
    folder = mbox.folder("INBOX")
    assert sorted(m.uid for m in folder.messages) == list(range(1, 151))
    # UIDs follow arrival order (the time at the head of the unique name).
    times = [int(split_filename(m.key)[0].split(".")[0]) for m in folder.messages]
    assert times == sorted(times)
    assert mbox.quota().used_messages == 150


RESCAN_PROBE = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
mbox = Store(Path(sys.argv[1])).mailbox("r@example.test")
listed = []
sys.addaudithook(lambda ev, args: listed.append(str(args[0])) if ev == "os.listdir" else None)
for i in range(3):
    mbox.deliver(b"Subject: x\r\n\r\nbody\r\n")
q = mbox.quota()
print(json.dumps({"listed": listed, "used": [q.used_bytes, q.used_messages]}))
"""


def test_quota_is_counted_without_rescanning_a_busy_mailbox(store):
    """maildirsize is read incrementally; a long file of deltas (a mailbox with much traffic)
    does not make every delivery list the folders again."""
    mbox = store.create_mailbox("r@example.test", quota_bytes=10_000_000)
    mbox.deliver(b"Subject: x\r\n\r\nbody\r\n")
    stored = len(b"Subject: x\n\nbody\n")
    # Thousands of deliveries and expunges that cancel out, as appended by Maildir++ writers.
    with open(mbox.path / "maildirsize", "a") as f:
        f.write(f"{stored} 1\n-{stored} -1\n" * 600)
    out = subprocess.run(
        [sys.executable, "-c", RESCAN_PROBE, str(store.root), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["used"] == [4 * stored, 4]
    assert result["listed"] == []


def test_a_quota_set_by_another_process_applies_at_once(store, make_message):
    server_side = store.create_mailbox("late@example.test")  # unlimited
    for i in range(3):
        server_side.deliver(make_message(i, 1000))
    # The admin command (another process: another Store) sets a limit below the usage.
    Store(store.root).mailbox("late@example.test").set_quota(2000, 0)
    from mailsuite.store import QuotaExceeded

    with pytest.raises(QuotaExceeded):
        server_side.deliver(make_message(9, 1000))
    assert server_side.quota().limit_bytes == 2000


def test_unique_names_carry_the_pid_of_the_process_that_made_them():
    assert f"P{os.getpid()}Q" in unique_name()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a name of its own, with its own pid
        os.write(w, unique_name().encode())
        os._exit(0)
    os.close(w)
    try:
        name = os.read(r, 1000).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert f"P{pid}Q" in name


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_folder_made_again_under_an_old_name_has_its_own_keywords(mbox, how):
    """The keyword letters of a folder renamed away or deleted stay with it; the folder made
    again under its name numbers its keywords from its own (new) dovecot-keywords."""
    mbox.create_folder("Lists")
    mbox.deliver(b"Subject: a\r\n\r\na\r\n", folder="Lists", flags=["$First", "$Second"])
    if how == "renamed":
        mbox.rename_folder("Lists", "Old")
    else:
        mbox.delete_folder("Lists")
    mbox.create_folder("Lists")
    key = mbox.deliver(b"Subject: b\r\n\r\nb\r\n", folder="Lists", flags=["$Second"])
    assert os.listdir(mbox.path / ".Lists" / "cur") == [key + ":2,a"]
    assert (mbox.path / ".Lists" / "dovecot-keywords").read_text() == "0 $Second\n"
    folder = mbox.folder("Lists")
    assert folder.by_uid(folder.uid_of_key(key)).flags == {"$Second"}
    if how == "renamed":
        old = mbox.folder("Old")
        assert [m.flags for m in old.messages] == [{"$First", "$Second"}]


@pytest.mark.parametrize("how", ["renamed", "deleted"])
def test_a_folder_made_again_under_an_old_name_gets_the_new_deliveries(mbox, how):
    """Deliveries rename into a folder's new/ through a descriptor held across them: once
    the folder is renamed away (the descriptor would follow it) or deleted, a folder made
    again under its name gets the next delivery, the renamed one keeps only its own."""
    mbox.create_folder("Lists")
    first = mbox.deliver(b"Subject: a\r\n\r\na\r\n", folder="Lists")
    if how == "renamed":
        mbox.rename_folder("Lists", "Old")
    else:
        mbox.delete_folder("Lists")
    mbox.create_folder("Lists")
    second = mbox.deliver(b"Subject: b\r\n\r\nb\r\n", folder="Lists")
    assert os.listdir(mbox.path / ".Lists" / "new") == [second]
    if how == "renamed":
        assert os.listdir(mbox.path / ".Old" / "new") == [first]
    third = mbox.deliver(b"Subject: c\r\n\r\nc\r\n", folder="Lists")
    assert sorted(os.listdir(mbox.path / ".Lists" / "new")) == sorted([second, third])
