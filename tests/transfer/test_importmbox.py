"""`mailsuite import mbox`: a generated mboxrd file, through the admin command, into the store."""

from __future__ import annotations

import calendar
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.transfer.mboxfile import format_message, read_mbox

MSG1 = b"From: a@remote.test\nSubject: one\nMessage-ID: <1@remote.test>\n\nFrom the start\n"
MSG2 = b"From: b@remote.test\nSubject: two\n\n>From quoted\nplain\n"
MSG3 = b"Subject: three\nDate: Tue, 14 Nov 2023 22:13:20 +0100\n\nbody\n"


def generated_mbox() -> bytes:
    """As mutt/Dovecot write it: From_ lines, escaped bodies, Status/X-Status/X-Keywords."""
    return (
        b"From a@remote.test Mon Jan  2 03:04:05 2023\n"
        b"From: a@remote.test\nSubject: one\nMessage-ID: <1@remote.test>\n"
        b"Status: RO\nX-Status: AF\nX-Keywords: $Label1 project\n\n>From the start\n\n"
        b"From b@remote.test Tue Feb 14 10:00:00 2023\n"
        b"From: b@remote.test\nSubject: two\nStatus: O\n\n>>From quoted\nplain\n\n"
        # No date on the From_ line: the Date: header is used.
        b"From MAILER-DAEMON\nSubject: three\nDate: Tue, 14 Nov 2023 22:13:20 +0100\n\nbody\n\n"
        # An empty message: reported and skipped, the run goes on.
        b"From nobody Wed Mar  1 00:00:00 2023\n\n"
        b"From c@remote.test Thu Mar  2 00:00:00 2023\nSubject: four\n\nlast\n"
    )


def test_import_mbox_through_the_admin_command(site, tmp_path):
    mbox = site.add_user("ann@example.test")
    path = tmp_path / "old.mbox"
    path.write_bytes(generated_mbox())
    code, out, err = site.run(
        "import", "mbox", str(path), "--user", "ann@example.test", "--folder", "Old/2023"
    )
    assert code == 0, err
    assert out.startswith("imported 4 messages") and "1 skipped" in out
    assert "skipped message 4 of old.mbox: empty message" in err
    msgs = site.contents(mbox, "Old/2023")
    assert [m[3] for m in msgs] == [MSG1, MSG2, MSG3, b"Subject: four\n\nlast\n"]
    assert msgs[0][1] == {"\\Seen", "\\Answered", "\\Flagged", "$Label1", "project"}
    assert msgs[1][1] == frozenset()
    assert msgs[0][2] == calendar.timegm((2023, 1, 2, 3, 4, 5, 0, 0, 0))
    assert msgs[2][2] == calendar.timegm((2023, 11, 14, 21, 13, 20, 0, 0, 0))
    assert "Old/2023" in mbox.subscriptions()


def test_import_mbox_unknown_user_fails_cleanly(site, tmp_path):
    path = tmp_path / "x.mbox"
    path.write_bytes(generated_mbox())
    code, _, err = site.run("import", "mbox", str(path), "--user", "ghost@example.test")
    assert code == 67 and "no such user" in err and "Traceback" not in err


def test_crlf_mbox_is_stored_with_lf(site, tmp_path):
    mbox = site.add_user("bea@example.test")
    path = tmp_path / "crlf.mbox"
    path.write_bytes(b"From x Mon Jan  2 03:04:05 2023\r\nSubject: crlf\r\n\r\nbody\r\n\r\n")
    code, _, err = site.run("import", "mbox", str(path), "--user", "bea@example.test")
    assert code == 0, err
    assert [m[3] for m in site.contents(mbox, "INBOX")] == [b"Subject: crlf\n\nbody\n"]


_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
_body = st.lists(
    st.one_of(_line, st.sampled_from([b"From x", b">From y", b">>From ", b""])), max_size=8
)


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(_body, min_size=1, max_size=4),
    flags=st.sets(st.sampled_from(["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "kw"])),
)
def test_mboxrd_round_trip_property(bodies, flags):
    msgs = [b"Subject: s\n\n" + b"".join(ln + b"\n" for ln in body) for body in bodies]
    date = float(int(time.time()))
    data = b"".join(format_message(m, flags, date) for m in msgs)
    back = list(read_mbox(data.splitlines(keepends=True)))
    assert [m.data for m in back] == msgs
    assert all(m.flags == frozenset(flags) and m.date == date for m in back)


def test_imported_messages_are_numbered_in_file_order(site, tmp_path):
    # Many deliveries in the same second: UIDs must follow the mbox, not file-name sorting.
    mbox = site.add_user("kay@example.test")
    path = tmp_path / "many.mbox"
    path.write_bytes(
        b"".join(
            b"From x Mon Jan  2 03:04:05 2023\nSubject: %d\n\nbody\n\n" % i for i in range(200)
        )
    )
    code, out, err = site.run("import", "mbox", str(path), "--user", "kay@example.test")
    assert code == 0, err
    msgs = site.contents(mbox, "INBOX")
    assert [m[0] for m in msgs] == list(range(1, 201))
    assert [m[3] for m in msgs] == [b"Subject: %d\n\nbody\n" % i for i in range(200)]


def folder_files(mailbox, name: str = "INBOX") -> list:
    path = mailbox.folder_path(name)
    return sorted(p for sub in ("new", "cur", "tmp") for p in (path / sub).glob("*"))


def test_a_file_that_is_not_an_mbox_exits_65_having_imported_nothing(site, tmp_path):
    mbox = site.add_user("ann@example.test")
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Subject: not an mbox\n\nJust a text file.\nFrom here on\n")
    code, out, err = site.run("import", "mbox", str(path), "--user", "ann@example.test")
    assert code == 65, (out, err)
    assert "not an mbox" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert folder_files(mbox) == []


def test_a_folder_outside_the_mailbox_is_refused_with_nothing_written(site, tmp_path):
    mbox = site.add_user("ann@example.test")
    path = tmp_path / "old.mbox"
    path.write_bytes(generated_mbox())
    before = sorted(p.relative_to(site.root) for p in site.root.rglob("*"))
    for folder in ("../x", "a//b", "x/../../y"):
        code, _, err = site.run(
            "import", "mbox", str(path), "--user", "ann@example.test", "--folder", folder
        )
        assert code == 65 and "--folder" in err, (folder, err)
    assert sorted(p.relative_to(site.root) for p in site.root.rglob("*")) == before
    assert not (site.root / "data" / "mail" / "example.test" / "x").exists()
    assert mbox.list_folders() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]


def test_importing_the_same_mbox_again_skips_what_is_there(site, tmp_path):
    mbox = site.add_user("ann@example.test")
    path = tmp_path / "old.mbox"
    path.write_bytes(generated_mbox())
    code, out, err = site.run("import", "mbox", str(path), "--user", "ann@example.test")
    assert code == 0, err
    assert out.startswith("imported 4 messages")
    code, out, err = site.run("import", "mbox", str(path), "--user", "ann@example.test")
    assert code == 0, err
    assert out.startswith("imported 0 messages") and "4 already present" in out, out
    assert len(site.contents(mbox, "INBOX")) == 4
    # A message with the same Message-ID but another body is not the same message; two true
    # copies in the source are two copies.
    changed = generated_mbox().replace(b"From the start", b"From a changed start") + (
        b"\nFrom c@remote.test Thu Mar  2 00:00:00 2023\nSubject: four\n\nlast\n"
    )
    path.write_bytes(changed)
    code, out, err = site.run("import", "mbox", str(path), "--user", "ann@example.test")
    assert code == 0, err
    assert out.startswith("imported 2 messages") and "3 already present" in out, out
    bodies = [m[3] for m in site.contents(mbox, "INBOX")]
    assert bodies.count(b"Subject: four\n\nlast\n") == 2 and len(bodies) == 6


def test_nothing_importable_exits_non_zero(site, tmp_path):
    mbox = site.add_user("ann@example.test")
    path = tmp_path / "empty-messages.mbox"
    path.write_bytes(b"From a Mon Jan  2 03:04:05 2023\n\nFrom b Mon Jan  2 03:04:05 2023\n\n")
    code, out, err = site.run("import", "mbox", str(path), "--user", "ann@example.test")
    assert code == 65, (out, err)
    assert "imported 0 messages" in out and "2 skipped" in out
    assert folder_files(mbox) == []
