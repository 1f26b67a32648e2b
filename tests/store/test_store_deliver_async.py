"""Delivery from the reactor thread: Mailbox.deliver run in the durable-I/O service's pool, the
same durable result as the blocking delivery, and nothing left behind when it fails."""

from __future__ import annotations

import os

import pytest

from mailsuite.store import NoSuchFolder, QuotaExceeded
from tests.conftest import on_reactor


def outcome(d):
    """Wait on the reactor thread for a Deferred: ("ok", value) or ("error", exception)."""
    return on_reactor(lambda: d().addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.value)))


@pytest.mark.parametrize("lines", [1, 20_000], ids=["small", "large"])
def test_deliver_async_stores_like_deliver(reactor_running, mbox, lines):
    data = b"Subject: async\r\n\r\n" + b"line one\r\n.dot line\r\n" * lines
    kind, key = outcome(lambda: mbox.deliver_async(data))
    assert kind == "ok"
    base = mbox.folder_path("INBOX")
    assert os.listdir(base / "new") == [key] and os.listdir(base / "tmp") == []
    stored = (base / "new" / key).read_bytes()
    assert stored == data.replace(b"\r\n", b"\n")
    assert f",S={len(stored)},W={len(data)}" in key
    assert mbox.quota().used_messages == 1 and mbox.quota().used_bytes == len(stored)


def test_deliver_async_refusals_leave_nothing(reactor_running, store):
    mbox = store.create_mailbox("bob@example.test", 100, 0)
    kind, err = outcome(lambda: mbox.deliver_async(b"Subject: big\r\n\r\n" + b"x" * 200))
    assert kind == "error" and isinstance(err, QuotaExceeded)
    kind, err = outcome(lambda: mbox.deliver_async(b"Subject: x\r\n\r\nx\r\n", "Nowhere"))
    assert kind == "error" and isinstance(err, NoSuchFolder)
    base = mbox.folder_path("INBOX")
    assert os.listdir(base / "new") == [] and os.listdir(base / "tmp") == []


def test_a_failure_after_the_file_was_written_leaves_no_file_and_no_quota(reactor_running, mbox):
    """new/ is not a folder: the file is written, the rename fails, the file in tmp/ is removed
    and the quota count taken back."""
    base = mbox.folder_path("INBOX")
    os.rmdir(base / "new")
    (base / "new").write_bytes(b"")
    kind, err = outcome(lambda: mbox.deliver_async(b"Subject: x\r\n\r\nbody\r\n"))
    assert kind == "error" and isinstance(err, NotADirectoryError)
    assert os.listdir(base / "tmp") == []
    assert mbox.quota().used_messages == 0 and mbox.quota().used_bytes == 0
