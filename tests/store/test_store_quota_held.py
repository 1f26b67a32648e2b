"""A delivery counts itself in maildirsize through a descriptor the mailbox holds: the count is
right, it follows the file when the file is replaced (a recalculation, here or in another
process), a failed delivery takes its count back, and limits still refuse."""

from __future__ import annotations

import os

import pytest

from mailsuite.durable import DurableIO
from mailsuite.store import QuotaExceeded, Store
from mailsuite.store import quota as quota_mod

MESSAGE = b"Subject: x\r\n\r\nbody\r\n"


@pytest.fixture
def mbox(tmp_path):
    io = DurableIO()
    yield Store(tmp_path, io).create_mailbox("u@example.test")
    io.stop()


def size_on_disk() -> int:
    return len(MESSAGE.replace(b"\r\n", b"\n"))


def test_deliveries_are_counted_through_the_held_file(mbox):
    for _ in range(3):
        mbox.deliver(MESSAGE)
    assert mbox._quota._held[0] is not None
    q = mbox.quota()
    assert (q.used_bytes, q.used_messages) == (3 * size_on_disk(), 3)


def test_a_replaced_file_gets_the_next_count(mbox):
    mbox.deliver(MESSAGE)
    # Another process recalculates: the file is replaced whole.
    path = mbox.path / "maildirsize"
    tmp = mbox.path / "maildirsize.other"
    tmp.write_text(f"0S,0C\n{size_on_disk()} 1\n")
    os.replace(tmp, path)
    mbox.deliver(MESSAGE)
    q = mbox.quota()
    assert (q.used_bytes, q.used_messages) == (2 * size_on_disk(), 2)
    assert path.read_text().splitlines()[-1] == f"{size_on_disk()} 1"


def test_a_failed_delivery_takes_its_count_back(mbox):
    mbox.deliver(MESSAGE)
    os.rmdir(mbox.path / "tmp")  # the write fails
    with pytest.raises(OSError):
        mbox.deliver(MESSAGE)
    q = mbox.quota()
    assert (q.used_bytes, q.used_messages) == (size_on_disk(), 1)


def test_limits_refuse_and_count_nothing(mbox):
    mbox.set_quota(0, 2)
    mbox.deliver(MESSAGE)
    mbox.deliver(MESSAGE)
    with pytest.raises(QuotaExceeded):
        mbox.deliver(MESSAGE)
    q = mbox.quota()
    assert q.used_messages == 2 and len(os.listdir(mbox.path / "new")) == 2


def test_held_files_are_bounded(tmp_path, monkeypatch):
    # no slot left, whatever earlier tests' mailboxes still hold or give back meanwhile
    monkeypatch.setattr(quota_mod, "HELD_FILES", 0)
    io = DurableIO()
    try:
        mbox = Store(tmp_path, io).create_mailbox("v@example.test")
        mbox.deliver(MESSAGE)
        mbox.deliver(MESSAGE)
        assert mbox._quota._held[0] is None and mbox.quota().used_messages == 2
    finally:
        io.stop()
