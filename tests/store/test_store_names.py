"""IMAP folder names <-> Maildir++ directories: round trips, UTF-8 on disk, unsafe names refused."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.store import BadFolderName, NoSuchFolder
from mailsuite.store.names import from_dirname, to_dirname, validate

# One level of a legal name: no separator, no control characters, not "." / ".." / "~...".
level = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="/\x7f", min_codepoint=0x20
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", "..") and not s.startswith("~"))


@settings(max_examples=200, deadline=None)
@given(st.lists(level, min_size=1, max_size=4))
def test_any_legal_name_round_trips_through_its_directory_name(levels):
    name = "/".join(levels)
    if len(name.encode()) > 200 or levels[0].upper() == "INBOX":
        return
    dirname = to_dirname(name)
    assert dirname.startswith(".")
    assert "/" not in dirname
    assert from_dirname(dirname) == name


def test_separator_maps_to_dot_and_inner_dots_are_escaped():
    assert to_dirname("Work/Projects") == ".Work.Projects"
    assert to_dirname("v1.2/a%b") == ".v1%2E2.a%25b"
    assert from_dirname(".v1%2E2.a%25b") == "v1.2/a%b"
    assert to_dirname("INBOX") == ""
    # INBOX is case-insensitive (RFC 3501 §5.1), also as the first level of a hierarchy.
    assert validate("inbox") == "INBOX"
    assert validate("Inbox/Sub") == "INBOX/Sub"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "..",
        "a/../b",
        "a/./b",
        "a//b",
        "/abs",
        "trailing/",
        "nul\0byte",
        "tab\there",
        "line\nfeed",
        "del\x7fchar",
        "~home",
        "x" * 201,
        "/".join(["d"] * 17),
    ],
)
def test_unsafe_names_are_refused(mbox, bad):
    with pytest.raises(BadFolderName):
        validate(bad)
    with pytest.raises(BadFolderName):
        mbox.create_folder(bad)
    with pytest.raises(BadFolderName):
        mbox.deliver(b"Subject: x\r\n\r\nbody\r\n", folder=bad)


def test_no_created_folder_ever_lands_outside_the_maildir(mbox, tmp_path):
    before = set(os.listdir(mbox.path.parent))
    for name in ("../escape", "a/../../escape", "..%2F..", "%2E%2E"):
        try:
            mbox.create_folder(name)
        except BadFolderName:
            pass
    assert set(os.listdir(mbox.path.parent)) == before
    for entry in os.listdir(mbox.path):
        assert (mbox.path / entry).resolve().parent == mbox.path.resolve()


def test_utf8_names_are_stored_as_utf8_directories(mbox):
    mbox.create_folder("Entwürfe/Größe.2024")
    assert ".Entwürfe.Größe%2E2024".encode() in os.listdir(os.fsencode(mbox.path))
    assert "Entwürfe/Größe.2024" in mbox.list_folders()
    key = mbox.deliver(b"Subject: x\r\n\r\nbody\r\n", folder="Entwürfe/Größe.2024")
    folder = mbox.folder("Entwürfe/Größe.2024")
    assert folder.uid_of_key(key) == 1


def test_dot_in_name_is_a_different_folder_from_hierarchy(mbox):
    mbox.create_folder("a.b")
    mbox.create_folder("a/b")
    assert {"a.b", "a/b"} <= set(mbox.list_folders())
    k1 = mbox.deliver(b"Subject: one\r\n\r\n1\r\n", folder="a.b")
    k2 = mbox.deliver(b"Subject: two\r\n\r\n2\r\n", folder="a/b")
    assert mbox.folder("a.b").uid_of_key(k1) and mbox.folder("a.b").uid_of_key(k2) is None
    assert mbox.folder("a/b").uid_of_key(k2) and mbox.folder("a/b").uid_of_key(k1) is None


def test_foreign_directories_are_not_folders(mbox):
    (mbox.path / ".hidden-not-maildir").mkdir()  # no cur/: not a folder
    (mbox.path / "..weird" / "cur").mkdir(parents=True)  # empty level
    names = mbox.list_folders()
    assert "hidden-not-maildir" not in names
    assert all(".." not in n for n in names)
    with pytest.raises(NoSuchFolder):
        mbox.folder("hidden-not-maildir")


def test_names_whose_directory_would_be_too_long_are_refused_not_crashing(mbox):
    # 199 characters (under the 200-byte limit) but 400 once the dots are escaped.
    name = "x." * 99 + "x"
    with pytest.raises(BadFolderName, match="too long"):
        mbox.create_folder(name)
    with pytest.raises(BadFolderName):
        mbox.deliver(b"Subject: x\r\n\r\nx\r\n", folder=name)
    assert name not in mbox.list_folders()
