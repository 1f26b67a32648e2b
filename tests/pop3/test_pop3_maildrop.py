"""The session's maildrop snapshot (RFC 1939 §5 numbering, DELE marks) and the IN-USE registry."""

from __future__ import annotations

import pytest

from mailsuite.pop3.maildrop import Entry, Maildrop
from mailsuite.pop3.parser import Pop3Error
from mailsuite.pop3.server_state import Pop3State


def make_drop() -> Maildrop:
    entries = [Entry(10, 100, "a"), Entry(11, 200, "b"), Entry(15, 300, "c")]
    return Maildrop(entries, lambda e: f"{e.uid}-{e.key}")


def test_rfc1939_stat_and_listings_skip_deleted_messages():
    drop = make_drop()
    assert drop.stat() == (3, 600)
    assert len(drop.scan_listing()) == len(drop.uid_listing()) == 3  # cached until DELE
    drop.delete(2)
    assert drop.stat() == (2, 400)
    assert drop.scan_listing() == [b"1 100", b"3 300"]
    assert drop.uid_listing() == [b"1 10-a", b"3 15-c"]
    assert drop.deleted_uids() == [11]


def test_rfc1939_numbers_stay_fixed_and_deleted_ones_are_refused():
    drop = make_drop()
    drop.delete(1)
    assert drop.get(2).uid == 11
    with pytest.raises(Pop3Error):
        drop.get(1)
    with pytest.raises(Pop3Error):
        drop.delete(1)
    for bad in (0, 4, 1000):
        with pytest.raises(Pop3Error):
            drop.get(bad)


def test_rfc1939_rset_unmarks_everything():
    drop = make_drop()
    drop.delete(1)
    drop.delete(3)
    assert drop.scan_listing() == [b"2 200"]
    drop.reset()
    assert drop.stat() == (3, 600) and drop.deleted_uids() == []
    assert drop.scan_listing() == [b"1 100", b"2 200", b"3 300"]


def test_one_session_per_mailbox():
    reg = Pop3State()
    a, b = object(), object()
    assert reg.acquire("U@example.test", a)
    assert reg.acquire("u@example.test", a)  # re-entrant for its holder
    assert not reg.acquire("u@example.test", b)
    reg.release("u@example.test", b)  # not the holder: no effect
    assert reg.holder("u@example.test") is a
    reg.release("u@example.test", a)
    assert reg.acquire("u@example.test", b)


def test_rfc2449_login_delay_bookkeeping():
    reg = Pop3State()
    assert reg.login_delay_left("u@x", 60, now=100.0) == 0
    reg.record_login("u@x", now=100.0)
    assert reg.login_delay_left("u@x", 60, now=130.0) == 30.0
    assert reg.login_delay_left("u@x", 60, now=161.0) == 0
    assert reg.login_delay_left("u@x", 0, now=101.0) == 0


def test_listings_are_kept_per_folder_until_its_version_changes():
    class Folder:
        pass

    state, a, b = Pop3State(), Folder(), Folder()
    first = state.shared_listings(a, (1, 7, "uid"))
    assert state.shared_listings(a, (1, 7, "uid")) is first
    assert state.shared_listings(b, (1, 7, "uid")) is not first
    assert state.shared_listings(a, (2, 7, "uid")) is not first


def test_full_listings_are_shared_but_a_session_with_deletions_keeps_its_own():
    shared: dict = {}
    first = Maildrop([Entry(10, 100, "a"), Entry(11, 200, "b")], lambda e: e.key, shared)
    assert first.scan_listing() == [b"1 100", b"2 200"]
    assert first.uid_listing() == [b"1 a", b"2 b"]
    # A second session of the same message set reuses them (its uidl is never called).
    second = Maildrop([Entry(10, 100, "a"), Entry(11, 200, "b")], lambda e: 1 / 0, shared)
    assert second.uid_listing() == [b"1 a", b"2 b"]
    second.delete(1)
    assert second.scan_listing() == [b"2 200"]
    assert first.scan_listing() == [b"1 100", b"2 200"]
    assert shared["scan"] == [b"1 100", b"2 200"]
