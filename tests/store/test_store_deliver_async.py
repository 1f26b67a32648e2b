"""Delivery from the reactor thread: the file written and fsynced through io_uring (or written at
once with fsyncs through Linux AIO, or the thread pool where neither is available), the same
durable result as the blocking delivery."""

from __future__ import annotations

import os

import pytest

from mailsuite import aiofsync, durable
from mailsuite.store import NoSuchFolder, QuotaExceeded
from tests.conftest import on_reactor


def outcome(d):
    """Wait on the reactor thread for a Deferred: ("ok", value) or ("error", exception)."""
    return on_reactor(lambda: d().addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.value)))


def test_aio_fsync_completes_and_reports_errors(reactor_running, tmp_path):
    try:
        backend = on_reactor(aiofsync.AioFsync)
    except OSError as e:  # pragma: no cover - a kernel or sandbox without io_setup
        pytest.fail(f"Linux AIO unavailable here: {e}")
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"x" * 10000)
    try:
        assert outcome(lambda: backend.fsync([fd])[0]) == ("ok", None)
    finally:
        os.close(fd)
    kind, err = outcome(lambda: backend.fsync([10_000])[0])  # not an open descriptor
    assert kind == "error" and isinstance(err, OSError)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert outcome(lambda: backend.fsync([dfd])[0]) == ("ok", None)
    finally:
        os.close(dfd)
        on_reactor(backend.close)


def test_fsync_dir_of_a_missing_directory_fails(reactor_running, tmp_path):
    kind, err = outcome(lambda: aiofsync.fsync_dir(str(tmp_path), str(tmp_path / "missing")))
    assert kind == "error" and isinstance(err, FileNotFoundError)


def test_several_fsyncs_in_one_submission_report_the_first_error(reactor_running, tmp_path):
    fds = [os.open(tmp_path / name, os.O_WRONLY | os.O_CREAT, 0o600) for name in "ab"]
    try:
        assert outcome(lambda: aiofsync.fsync(*fds)) == ("ok", None)
        assert outcome(lambda: aiofsync.fsync_dir(str(tmp_path))) == ("ok", None)
        kind, err = outcome(lambda: aiofsync.fsync(fds[0], 10_000, fds[1]))
        assert kind == "error" and isinstance(err, OSError)
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.parametrize(
    ("way", "lines"),
    [("uring", 1), ("uring", 20_000), ("aio", 1), ("threads", 1), ("aio", 20_000)],
    ids=["uring", "uring-large", "aio", "thread-pool-fsync", "large-written-in-a-thread"],
)
def test_deliver_async_stores_like_deliver(reactor_running, mbox, way, lines, monkeypatch):
    if way != "uring":
        monkeypatch.setattr(durable, "_ring", False)
    if way == "threads":
        monkeypatch.setattr(aiofsync, "_backend", False)
    data = b"Subject: async\r\n\r\n" + b"line one\r\n.dot line\r\n" * lines
    assert (len(data) > aiofsync.SMALL_WRITE) == (lines > 1)
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
