"""Folder management: create, delete, rename (children and special-use follow; RFC 3501 §6.3.5
INBOX rename moves the messages), with the quota kept in step."""

from __future__ import annotations

import pytest

from mailsuite.store import FolderExists, NoSuchFolder, Store
from mailsuite.store.names import BadFolderName


def test_create_and_delete_folders_keep_quota_in_step(mbox):
    mbox.create_folder("Work/Projects", special_use="\\Flagged")
    assert mbox.exists("Work/Projects") and "Work/Projects" in mbox.list_folders()
    assert mbox.special_use()["Work/Projects"] == "\\Flagged"
    with pytest.raises(FolderExists):
        mbox.create_folder("Work/Projects")
    mbox.deliver(b"Subject: 1\r\n\r\n1\r\n", folder="Work/Projects")
    mbox.deliver(b"Subject: 2\r\n\r\n2\r\n", folder="Work/Projects", flags=["\\Seen"])
    mbox.deliver(b"Subject: 3\r\n\r\n3\r\n")
    assert mbox.quota().used_messages == 3
    mbox.delete_folder("Work/Projects")  # never opened: counted from the file names
    assert not mbox.exists("Work/Projects")
    assert "Work/Projects" not in mbox.special_use()
    assert mbox.quota().used_messages == 1
    folder_was_open = mbox.folder("Sent")
    mbox.deliver(b"Subject: 4\r\n\r\n4\r\n", folder="Sent")
    folder_was_open.refresh(force=True)
    mbox.delete_folder("Sent")
    assert mbox.quota().used_messages == 1
    with pytest.raises(NoSuchFolder):
        mbox.delete_folder("Sent")
    with pytest.raises(BadFolderName):
        mbox.delete_folder("INBOX")


def test_rename_moves_children_special_use_and_keeps_uids(store, mbox):
    mbox.create_folder("Old/Child")
    key = mbox.deliver(b"Subject: c\r\n\r\nc\r\n", folder="Old/Child")
    uid = mbox.folder("Old/Child").uid_of_key(key)
    mbox.rename_folder("Archive", "Old/Archive")
    folders = mbox.list_folders()
    assert "Old/Archive" in folders and "Archive" not in folders
    assert mbox.special_use()["Old/Archive"] == "\\Archive"
    fresh = Store(store.root).mailbox("alice@example.test")
    assert fresh.folder("Old/Child").uid_of_key(key) == uid
    with pytest.raises(FolderExists):
        mbox.rename_folder("Sent", "Drafts")
    with pytest.raises(NoSuchFolder):
        mbox.rename_folder("Nope", "Other")


def test_rename_a_parent_moves_its_children(mbox):
    mbox.create_folder("Top")
    mbox.create_folder("Top/Mid/Leaf")
    key = mbox.deliver(b"Subject: leaf\r\n\r\nx\r\n", folder="Top/Mid/Leaf")
    mbox.rename_folder("Top", "Renamed")
    folders = mbox.list_folders()
    assert "Renamed" in folders and "Renamed/Mid/Leaf" in folders
    assert not any(f.startswith("Top") for f in folders)
    assert mbox.folder("Renamed/Mid/Leaf").uid_of_key(key) is not None


def test_renaming_inbox_moves_its_messages_and_leaves_it_empty(mbox):
    keys = [mbox.deliver(f"Subject: {i}\r\n\r\nx\r\n".encode()) for i in range(3)]
    inbox = mbox.folder("INBOX")
    assert len(inbox.messages) == 3
    old_validity, old_next = inbox.uidvalidity, inbox.uidnext
    mbox.rename_folder("INBOX", "Old Mail")
    assert "INBOX" in mbox.list_folders() and "Old Mail" in mbox.list_folders()
    moved = mbox.folder("Old Mail")
    assert sorted(m.key for m in moved.messages) == sorted(keys)
    inbox = mbox.folder("INBOX")
    inbox.refresh(force=True)
    assert inbox.messages == []
    # New mail still lands in INBOX, with UIDs a client cannot confuse with the old ones.
    mbox.deliver(b"Subject: after\r\n\r\nx\r\n")
    inbox.refresh(force=True)
    assert len(inbox.messages) == 1
    assert inbox.uidvalidity != old_validity or inbox.messages[0].uid >= old_next


def test_a_folder_deleted_and_created_again_gets_a_new_uidvalidity(mbox):
    """RFC 3501 §2.3.1.1: the new instance must not reuse the old UIDVALIDITY, even when both
    happen within one second (UIDVALIDITY is time-based)."""
    seen = set()
    for round_ in range(3):
        mbox.create_folder("Again")
        mbox.deliver(f"Subject: {round_}\r\n\r\nx\r\n".encode(), folder="Again")
        folder = mbox.folder("Again")
        assert [m.uid for m in folder.messages] == [1]
        assert folder.uidvalidity not in seen
        seen.add(folder.uidvalidity)
        mbox.delete_folder("Again")
    # Every folder of the Maildir draws from the same counter, kept as Dovecot keeps it.
    last = int((mbox.path / "dovecot-uidvalidity").read_text(), 16)
    assert last >= max(seen)
