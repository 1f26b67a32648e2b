"""`mailsuite export` then re-import: byte-for-byte round trips (Maildir and mbox)."""

from __future__ import annotations

import os

MESSAGES = [
    ("INBOX", b"Subject: plain\n\nhello\n", ["\\Seen"], 1_700_000_000),
    (
        "INBOX",
        b"Subject: from\n\nFrom the top\n>From quoted\n",
        ["\\Answered", "work"],
        1_700_000_100,
    ),
    ("INBOX", b"Subject: no flags\nReturn-Path: <x@remote.test>\n\nz\n", [], 1_700_000_150),
    ("Archive/2023", b"Subject: archived\n\nold\n", ["\\Flagged", "$Label1"], 1_600_000_000),
    ("Été.dots", b"Subject: utf8 folder\n\n\xc3\xa9t\xc3\xa9\n", ["\\Draft"], 1_650_000_000),
]


def populated(site, address):
    mbox = site.add_user(address)
    for folder, data, flags, date in MESSAGES:
        if not mbox.exists(folder):
            mbox.create_folder(folder)
        mbox.deliver(data, folder, flags, date)
    return mbox


def test_maildir_export_reimport_is_byte_for_byte_with_uids(site, tmp_path):
    src = populated(site, "eve@example.test")
    out = tmp_path / "backup"
    code, stdout, err = site.run("export", "--user", "eve@example.test", "--to", str(out))
    assert code == 0, err
    assert stdout.startswith("exported 5 messages")
    assert (out / "cur").is_dir() and (out / ".Archive.2023" / "dovecot-uidlist").is_file()
    dst = site.add_user("fay@example.test")
    code, _, err = site.run("import", "maildir", str(out), "--user", "fay@example.test")
    assert code == 0, err
    assert set(dst.list_folders()) == set(src.list_folders())
    for name in src.list_folders():
        assert site.contents(dst, name) == site.contents(src, name), name
        assert dst.folder(name).uidvalidity == src.folder(name).uidvalidity


def test_mbox_export_reimport_is_byte_for_byte(site, tmp_path):
    src = populated(site, "gil@example.test")
    out = tmp_path / "mboxes"
    code, _, err = site.run(
        "export", "--user", "gil@example.test", "--to", str(out), "--format", "mbox"
    )
    assert code == 0, err
    assert (out / "Archive" / "2023.mbox").is_file() and (out / "Été.dots.mbox").is_file()
    dst = site.add_user("hal@example.test")
    for name in ("INBOX", "Archive/2023", "Été.dots"):
        path = out / (name + ".mbox")
        code, _, err = site.run(
            "import", "mbox", str(path), "--user", "hal@example.test", "--folder", name
        )
        assert code == 0, err
        strip = [(m[1], m[2], m[3]) for m in site.contents(src, name)]
        assert [(m[1], m[2], m[3]) for m in site.contents(dst, name)] == strip, name


def test_export_refuses_a_non_empty_destination(site, tmp_path):
    populated(site, "ida@example.test")
    out = tmp_path / "busy"
    out.mkdir()
    (out / "something").write_text("x")
    code, _, err = site.run("export", "--user", "ida@example.test", "--to", str(out))
    assert code == 73 and "not an empty directory" in err  # EX_CANTCREAT
    assert os.listdir(out) == ["something"]
