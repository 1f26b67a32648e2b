"""Damaged or foreign data in a Maildir: rebuilt or skipped with a log line, never a lost message
or a crash."""

from __future__ import annotations

import os

import pytest

from mailsuite.store import Store


def deliver_three(mbox) -> list[str]:
    return [mbox.deliver(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode()) for i in range(3)]


@pytest.mark.parametrize(
    "damage",
    [
        b"",  # truncated to nothing
        b"garbage that is no uidlist\n1 :x\n",
        b"3 V123 N4\n1 :a\n1 :b\n",  # UIDs not ascending
        b"3 N4\n1 :a\n",  # no UIDVALIDITY
        b"\x00\x00\x00\x00\x00\x00",
        b"7 V1 N2\n",  # unknown version
    ],
)
def test_corrupt_uidlist_is_rebuilt_with_new_uidvalidity_and_logged(store, mbox, logs, damage):
    keys = deliver_three(mbox)
    before = mbox.folder("INBOX")
    before.save_index()
    (mbox.path / "dovecot-uidlist").write_bytes(damage)
    folder = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert sorted(m.key for m in folder.messages) == sorted(keys)  # no message lost
    assert sorted(m.uid for m in folder.messages) == [1, 2, 3]
    # RFC 3501 §2.3.1.1: UIDs were reassigned, so UIDVALIDITY must grow (even within the
    # second the old one was made in).
    assert folder.uidvalidity > before.uidvalidity
    assert logs.matching("corrupt uidlist")
    assert (mbox.path / "dovecot-uidlist").read_text().startswith(f"3 V{folder.uidvalidity} ")


def test_uidlist_cut_in_the_middle_of_a_line_keeps_the_complete_lines(store, mbox):
    keys = deliver_three(mbox)
    folder = mbox.folder("INBOX")
    folder.save_index()
    text = (mbox.path / "dovecot-uidlist").read_bytes()
    # A writer that died half-way through appending its line.
    (mbox.path / "dovecot-uidlist").write_bytes(text[:-10])
    (mbox.path / "mailsuite-index").unlink()
    fresh = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert fresh.uidvalidity == folder.uidvalidity
    assert {m.key: m.uid for m in fresh.messages} == {k: i + 1 for i, k in enumerate(keys)}


def test_corrupt_or_missing_index_is_rebuilt_from_the_uidlist(store, mbox):
    deliver_three(mbox)
    folder = mbox.folder("INBOX")
    folder.store_flags(folder.messages[:1], {"\\Seen"}, "add")
    folder.save_index()
    want = [(m.uid, m.key, m.flags) for m in folder.messages]
    for damage in (b"not marshal data", b"", None):
        if damage is None:
            (mbox.path / "mailsuite-index").unlink()
        else:
            (mbox.path / "mailsuite-index").write_bytes(damage)
        fresh = Store(store.root).mailbox("alice@example.test").folder("INBOX")
        assert [(m.uid, m.key, m.flags) for m in fresh.messages] == want


def test_file_without_size_in_its_name_is_measured_once(store, mbox):
    data = b"Subject: foreign\n\nline one\nline two\n"
    name = "1700000000.M1P99.otherhost"
    (mbox.path / "new" / name).write_bytes(data)
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    assert (msg.size, msg.wire_size) == (len(data), len(data) + 4)
    folder.save_index()
    # Rewritten in place (no rename, so no directory change): a cold open trusts the index
    # and does not read or measure the file again.
    (mbox.path / "new" / name).write_bytes(data * 3)
    fresh = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert (fresh.messages[0].size, fresh.messages[0].wire_size) == (len(data), len(data) + 4)


def test_unreadable_file_is_skipped_with_a_log_line(store, mbox, logs):
    keys = deliver_three(mbox)
    os.symlink("/nonexistent/target", mbox.path / "new" / "1700000000.M2P99.broken")
    (mbox.path / "cur" / "1700000001.M3P99.adir:2,S").mkdir()  # not a file at all
    folder = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert sorted(m.key for m in folder.messages) == sorted(keys)
    lines = logs.matching("skipping unreadable message")
    assert any("1700000000.M2P99.broken" in line for line in lines)
    assert any("1700000001.M3P99.adir" in line for line in lines)
    # The folder keeps working around them.
    key = mbox.deliver(b"Subject: later\r\n\r\nx\r\n")
    folder.refresh(force=True)
    assert folder.uid_of_key(key) is not None


def test_stray_files_in_maildir_subdirectories_are_ignored(mbox):
    deliver_three(mbox)
    (mbox.path / "new" / ".hidden").write_bytes(b"x")
    (mbox.path / "tmp" / "1700000000.M5P1.half-written").write_bytes(b"Subject: half")
    folder = mbox.folder("INBOX")
    assert len(folder.messages) == 3
