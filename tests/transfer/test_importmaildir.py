"""`mailsuite import maildir` from a Dovecot-layout Maildir++ fixture (uidlist + keywords)."""

from __future__ import annotations

import os
from pathlib import Path

from mailsuite.transfer.importmaildir import folder_name

T0 = 1_600_000_000


def put(folder: Path, sub: str, name: str, data: bytes, mtime: int) -> None:
    for d in ("cur", "new", "tmp"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    p = folder / sub / name
    p.write_bytes(data)
    os.utime(p, (mtime, mtime))


def dovecot_fixture(root: Path) -> None:
    """What a Dovecot 2.3 `mail_location = maildir:~/Maildir` home looks like."""
    put(root, "cur", "1600000000.M1P10.old,S=22,W=24:2,Sa", b"Subject: a\n\nfirst\n\n", T0)
    put(root, "cur", "1600000100.M2P10.old,S=20,W=22:2,RSb", b"Subject: b\n\nsecond\n", T0 + 100)
    put(root, "new", "1600000200.M3P10.old,S=19,W=21", b"Subject: c\n\nthird\n", T0 + 200)
    (root / "dovecot-uidlist").write_text(
        "3 V1234567 N20 G3085f01b7f11094c501100008c4a11c1\n"
        "3 :1600000000.M1P10.old,S=22,W=24\n"
        "7 W24 :1600000100.M2P10.old,S=20,W=22\n"
        "12 :1600000200.M3P10.old,S=19,W=21\n"
    )
    (root / "dovecot-keywords").write_text("0 $Label1\n1 project\n")
    sent = root / ".Sent"
    put(sent, "cur", "1600000300.M4P10.old,S=16:2,S", b"Subject: sent\n\nx\n", T0 + 300)
    (sent / "dovecot-uidlist").write_text("3 V1234999 N2\n1 :1600000300.M4P10.old,S=16\n")
    # Nested, modified UTF-7 ("Été") and no uidlist: UIDs are the store's own.
    ete = root / ".Archive.&AMk-t&AOk-"
    put(ete, "cur", "1600000400.M5P10.old:2,F", b"Subject: ete\n\ny\n", T0 + 400)
    put(ete, "cur", "1600000500.M6P10.old:2,", b"", T0 + 500)  # empty: skipped
    (root / ".Archive").mkdir()  # a parent without cur/ is not a folder
    (root / "subscriptions").write_text("Sent\n")


def test_dovecot_maildir_keeps_folders_flags_keywords_uids_and_dates(site, tmp_path):
    src = tmp_path / "Maildir"
    dovecot_fixture(src)
    mbox = site.add_user("cid@example.test")
    code, out, err = site.run("import", "maildir", str(src), "--user", "cid@example.test")
    assert code == 0, err
    assert out.startswith("imported 5 messages") and "1 skipped" in out

    inbox = mbox.folder("INBOX")
    assert inbox.uidvalidity == 1234567
    assert inbox.uidnext == 20
    assert site.contents(mbox, "INBOX") == [
        (3, frozenset({"\\Seen", "$Label1"}), T0, b"Subject: a\n\nfirst\n\n"),
        (7, frozenset({"\\Answered", "\\Seen", "project"}), T0 + 100, b"Subject: b\n\nsecond\n"),
        (12, frozenset(), T0 + 200, b"Subject: c\n\nthird\n"),
    ]
    assert mbox.folder("Sent").uidvalidity == 1234999
    assert site.contents(mbox, "Sent") == [
        (1, frozenset({"\\Seen"}), T0 + 300, b"Subject: sent\n\nx\n")
    ]
    ete = site.contents(mbox, "Archive/Été")
    assert [(m[1], m[2], m[3]) for m in ete] == [
        (frozenset({"\\Flagged"}), T0 + 400, b"Subject: ete\n\ny\n")
    ]


def test_uids_are_not_forced_into_a_folder_that_has_mail(site, tmp_path):
    src = tmp_path / "Maildir"
    dovecot_fixture(src)
    mbox = site.add_user("dee@example.test")
    mbox.deliver(b"Subject: already here\n\nz\n", "INBOX")
    before = mbox.folder("INBOX").uidvalidity
    code, _, err = site.run("import", "maildir", str(src), "--user", "dee@example.test")
    assert code == 0, err
    msgs = site.contents(mbox, "INBOX")
    assert mbox.folder("INBOX").uidvalidity == before
    assert [m[0] for m in msgs] == [1, 2, 3, 4]
    assert msgs[0][3] == b"Subject: already here\n\nz\n"


def test_courier_style_inbox_prefix_is_flattened():
    assert folder_name(".INBOX.Sent") == "Sent"
    assert folder_name(".Lists.python") == "Lists/python"
    assert folder_name(".R&-D") == "R&D"
    assert folder_name("..bad") is None
    assert folder_name("cur") is None


def test_in_place_dovecot_uidlist_naming_files_with_flags_keeps_uids(site):
    # Dovecot writes the last known file name into dovecot-uidlist, info part included.
    path = site.store.path_for("inplace@example.test")
    put(path, "cur", "1600000000.M1P1.h,S=8:2,S", b"a\n\nbody\n", T0)
    put(path, "cur", "1600000001.M2P1.h,S=8:2,FS", b"b\n\nbody\n", T0 + 1)
    (path / "dovecot-uidlist").write_text(
        "3 V4242 N30\n7 :1600000000.M1P1.h,S=8:2,\n21 W9 :1600000001.M2P1.h,S=8:2,F\n"
    )
    box = site.store.mailbox("inplace@example.test")
    assert box.folder("INBOX").uidvalidity == 4242
    assert [m[0] for m in site.contents(box, "INBOX")] == [7, 21]


def courier_fixture(root: Path) -> None:
    """A Courier-IMAP Maildir: courierimapuiddb (v1), courierimapkeywords/, INBOX.-prefixed."""
    put(root, "cur", "1500000000.1234_1.host:2,S", b"Subject: c1\n\none\n", T0)
    put(root, "cur", "1500000001.1234_2.host:2,", b"Subject: c2\n\ntwo\n", T0 + 1)
    put(root, "new", "1500000002.1234_3.host", b"Subject: c3\n\nthree\n", T0 + 2)
    (root / "courierimapuiddb").write_text(
        "1 777 40\n5 1500000000.1234_1.host:2,S\n6 1500000001.1234_2.host\n"
        "31 1500000002.1234_3.host\n"
    )
    kw = root / "courierimapkeywords"
    kw.mkdir()
    (kw / ":list").write_text(
        "$Label1\nproject\nold\n\n1500000000.1234_1.host:0 1\n1500000001.1234_2.host:2\n"
    )
    # Newer sets for message 2: ".N.key" files, the highest N wins; a plain "key" file beats all.
    (kw / ".3.1500000001.1234_2.host").write_text("stale\n")
    (kw / ".7.1500000001.1234_2.host").write_text("fresh\n$Label2\n")
    (kw / "1500000002.1234_3.host").write_text("todo\n")
    put(root / ".INBOX.Sent", "cur", "1500000003.1234_4.host:2,S", b"Subject: s\n\nx\n", T0 + 3)


def test_courier_maildir_keeps_uids_and_keywords(site, tmp_path):
    src = tmp_path / "courier"
    courier_fixture(src)
    mbox = site.add_user("cou@example.test")
    code, out, err = site.run("import", "maildir", str(src), "--user", "cou@example.test")
    assert code == 0, err
    assert mbox.folder("INBOX").uidvalidity == 777
    assert site.contents(mbox, "INBOX") == [
        (5, frozenset({"\\Seen", "$Label1", "project"}), T0, b"Subject: c1\n\none\n"),
        (6, frozenset({"fresh", "$Label2"}), T0 + 1, b"Subject: c2\n\ntwo\n"),
        (31, frozenset({"todo"}), T0 + 2, b"Subject: c3\n\nthree\n"),
    ]
    assert [m[3] for m in site.contents(mbox, "Sent")] == [b"Subject: s\n\nx\n"]


def test_a_second_run_skips_the_messages_already_imported(site, tmp_path):
    src = tmp_path / "Maildir"
    dovecot_fixture(src)
    mbox = site.add_user("eve@example.test")
    code, out, err = site.run("import", "maildir", str(src), "--user", "eve@example.test")
    assert code == 0 and out.startswith("imported 5 messages"), (out, err)
    before = {name: site.contents(mbox, name) for name in mbox.list_folders()}
    code, out, err = site.run("import", "maildir", str(src), "--user", "eve@example.test")
    assert code == 0, err
    assert out.startswith("imported 0 messages") and "5 already present" in out, out
    assert {name: site.contents(mbox, name) for name in mbox.list_folders()} == before
