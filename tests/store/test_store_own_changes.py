"""Our own flag changes, expunges and deliveries keep the index in step without listing the
folder, and a change another program makes in the same mtime tick is still found."""

from __future__ import annotations

import os

import pytest

from mailsuite.store import folder as folder_mod


def _listings(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = os.listdir

    def counting(path="."):
        calls.append(os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(folder_mod.os, "listdir", counting)
    return calls


@pytest.fixture
def inbox(mbox, make_message):
    for n in range(5):
        mbox.deliver(make_message(n))
    f = mbox.folder("INBOX")
    f.refresh(force=True)
    return f


def test_flag_changes_need_no_listing(inbox, monkeypatch):
    calls = _listings(monkeypatch)
    inbox.store_flags(inbox.messages[:3], {"\\Seen"}, "add")
    inbox.refresh()
    inbox.refresh()
    assert calls == []
    assert all("\\Seen" in m.flags for m in inbox.messages[:3])


def test_expunge_needs_no_listing(inbox, mbox, monkeypatch):
    calls = _listings(monkeypatch)
    mbox.expunge(inbox, inbox.messages[:2])
    inbox.refresh()
    assert calls == []
    assert len(inbox.messages) == 3


def test_same_tick_change_by_another_program_is_found_once_mtimes_settle(inbox, monkeypatch):
    inbox.store_flags(inbox.messages[:1], {"\\Flagged"}, "add")
    cur, new = inbox.path / "cur", inbox.path / "new"
    mtimes = {d: os.stat(d).st_mtime_ns for d in (cur, new)}
    # Another program renames a file in the same clock tick as ours: the mtimes do not move.
    victim = inbox.messages[1]
    os.rename(inbox.message_path(victim), cur / (victim.key + ":2,S"))
    for d, t in mtimes.items():
        os.utime(d, ns=(t, t))
    inbox.refresh()
    assert "\\Seen" not in inbox.by_uid(victim.uid).flags  # cannot be told apart yet
    monkeypatch.setattr(folder_mod, "MTIME_SLACK_NS", 0)  # the slack has passed
    inbox.refresh()
    assert "\\Seen" in inbox.by_uid(victim.uid).flags


def test_change_by_another_program_in_a_later_tick_is_found_at_once(inbox):
    inbox.store_flags(inbox.messages[:1], {"\\Flagged"}, "add")
    cur = inbox.path / "cur"
    victim = inbox.messages[1]
    os.rename(inbox.message_path(victim), cur / (victim.key + ":2,S"))
    later = os.stat(cur).st_mtime_ns + 10_000_000
    os.utime(cur, ns=(later, later))
    inbox.refresh()
    assert "\\Seen" in inbox.by_uid(victim.uid).flags


def test_index_delivered_assigns_the_next_uid_without_listing(
    inbox, mbox, make_message, monkeypatch
):
    events = []
    inbox.add_listener(events.append)
    calls = _listings(monkeypatch)
    key = mbox.deliver(make_message(9), "INBOX", ["\\Seen", "$Label1"])
    uid = inbox.index_delivered(key)
    assert calls == []
    assert uid == inbox.messages[-1].uid == inbox.uidnext - 1
    assert inbox.by_uid(uid).flags == {"\\Seen", "$Label1"}
    assert [(e.kind, e.uids) for e in events] == [("exists", (uid,))]
    # A later full listing agrees and adds nothing.
    monkeypatch.undo()
    inbox.refresh(force=True)
    assert [m.uid for m in inbox.messages].count(uid) == 1
    assert len(inbox.messages) == 6
