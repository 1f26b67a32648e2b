"""Adopting a Maildir exactly as Dovecot 2.3 leaves it: UIDs, UIDVALIDITY, keywords, folders and
subscriptions kept; the files we write stay readable by Dovecot.

The layout below was taken from a Maildir written by Dovecot 2.3.19 (doveadm save / flags add /
mailbox create / subscribe), with uidlist lines in the extended form Dovecot uses when it records
sizes (`<uid> W<vsize> S<size> :<base name>`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsuite.store import Store

UIDVALIDITY = 1700000000
M1 = "1700000000.M123P456.host,S=1200,W=1234"
M2 = "1700000001.M124P456.host,S=23,W=26"
M3 = "1700000002.M125P456.host"  # an old name without sizes
M_ARCH = "1700000003.M126P457.host,S=23,W=26"


def body(size: int, subject: str = "x") -> bytes:
    head = f"Subject: {subject}\n\n".encode()
    return head + b"y" * (size - len(head) - 1) + b"\n"


@pytest.fixture
def dovecot_maildir(tmp_path) -> Path:
    root = tmp_path / "mail"
    md = root / "example.test" / "bob"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    # UID 2 was expunged long ago; UIDs 5 and 7 are live, the next UID is 9.
    (md / "dovecot-uidlist").write_text(
        f"3 V{UIDVALIDITY} N9 Gb8c4ef34122a0b6b3d1c000083ecc375\n"
        f"1 W1234 S1200 :{M1}\n"
        f"5 :{M2}\n"
        f"7 W40 :{M3}\n"
    )
    (md / "dovecot-keywords").write_text("0 $Label1\n1 Work\n")
    (md / "dovecot-uidvalidity").write_text("6b0b2a14")
    (md / "dovecot.index.log").write_bytes(b"\x01\x02binary index log")
    (md / "dovecot.index.cache").write_bytes(b"\x00binary cache")
    (md / "cur" / f"{M1}:2,S").write_bytes(body(1200, "one"))
    (md / "cur" / f"{M2}:2,Sa").write_bytes(body(23, "two"))
    (md / "new" / M3).write_bytes(b"Subject: three\n\nline\nline\n")
    # Dovecot 2.3's subscriptions file, version 2: hierarchy levels separated by a tab.
    (md / "subscriptions").write_text("V\t2\n\nSent\nArchive\t2023\n")
    for folder in (".Sent", ".Archive.2023"):
        for sub in ("cur", "new", "tmp"):
            (md / folder / sub).mkdir(parents=True)
        (md / folder / "maildirfolder").write_text("")
    (md / ".Archive.2023" / "dovecot-uidlist").write_text(
        f"3 V{UIDVALIDITY + 3} N2 G1b32970d132a0b6b7d1c000083ecc375\n1 :{M_ARCH}\n"
    )
    (md / ".Archive.2023" / "new" / M_ARCH).write_bytes(body(23, "arch"))
    return root


def test_dovecot_maildir_is_adopted_with_uids_flags_and_keywords(dovecot_maildir):
    mbox = Store(dovecot_maildir).mailbox("bob@example.test")
    inbox = mbox.folder("INBOX")
    assert inbox.uidvalidity == UIDVALIDITY
    assert inbox.uidnext == 9
    assert [(m.uid, m.key) for m in inbox.messages] == [(1, M1), (5, M2), (7, M3)]
    m1, m2, m3 = inbox.messages
    assert m1.flags == {"\\Seen"}
    assert m2.flags == {"\\Seen", "$Label1"}
    assert m3.flags == frozenset()
    assert (m1.size, m1.wire_size) == (1200, 1234)
    assert (m2.size, m2.wire_size) == (23, 26)
    # No ,S= / ,W= in the name: computed from the file once.
    assert (m3.size, m3.wire_size) == (26, 30)
    assert inbox.read(m2) == body(23, "two")


def test_dovecot_folders_and_subscriptions_are_adopted(dovecot_maildir):
    mbox = Store(dovecot_maildir).mailbox("bob@example.test")
    assert mbox.list_folders() == ["INBOX", "Archive/2023", "Sent"]
    assert sorted(mbox.subscriptions()) == ["Archive/2023", "Sent"]
    arch = mbox.folder("Archive/2023")
    assert arch.uidvalidity == UIDVALIDITY + 3
    assert [(m.uid, m.key) for m in arch.messages] == [(1, M_ARCH)]


def test_new_mail_continues_dovecots_uids_in_a_file_dovecot_reads(dovecot_maildir):
    mbox = Store(dovecot_maildir).mailbox("bob@example.test")
    inbox = mbox.folder("INBOX")
    key = mbox.deliver(b"Subject: new\r\n\r\nnew\r\n")
    inbox.refresh(force=True)
    assert inbox.uid_of_key(key) == 9
    assert inbox.uidnext == 10
    inbox.store_flags([inbox.by_uid(9)], {"Work", "$Label1"}, "add")
    assert os.listdir(mbox.path / "cur").count(f"{key}:2,ab") == 1
    # The uidlist keeps Dovecot's lines and format: version 3 header, "<uid> ... :<name>".
    lines = (mbox.path / "dovecot-uidlist").read_text().splitlines()
    assert lines[0].startswith(f"3 V{UIDVALIDITY} ")
    assert f"9 :{key}" in lines
    assert any(line.endswith(f":{M1}") and line.startswith("1 ") for line in lines)
    assert (mbox.path / "dovecot-keywords").read_text() == "0 $Label1\n1 Work\n"


def test_subscriptions_we_write_stay_in_dovecots_format(dovecot_maildir):
    mbox = Store(dovecot_maildir).mailbox("bob@example.test")
    mbox.create_folder("Projects/Big")
    mbox.subscribe("Projects/Big")
    mbox.unsubscribe("Sent")
    text = (mbox.path / "subscriptions").read_text()
    assert text.startswith("V\t2\n\n")
    assert set(text.splitlines()[2:]) == {"Archive\t2023", "Projects\tBig"}
    assert sorted(Store(dovecot_maildir).mailbox("bob@example.test").subscriptions()) == [
        "Archive/2023",
        "Projects/Big",
    ]


def test_a_dovecot_flag_change_is_seen_as_a_rename(dovecot_maildir):
    mbox = Store(dovecot_maildir).mailbox("bob@example.test")
    inbox = mbox.folder("INBOX")
    os.rename(mbox.path / "new" / M3, mbox.path / "cur" / f"{M3}:2,RSb")
    inbox.refresh()
    assert inbox.by_uid(7).flags == {"\\Answered", "\\Seen", "Work"}
    assert [m.uid for m in inbox.messages] == [1, 5, 7]
