"""The spool format of docs/internals.md: entries/<id> (envelope line + message), and
env/<id>.json for the envelope as changed since."""

import dataclasses
import json
import os
import time
from types import SimpleNamespace

import pytest

from mailsuite.spool.queue import (
    FAILED,
    PENDING,
    NoSuchEntry,
    Queue,
    QueuedRecipient,
    QueueEntry,
)
from tests.conftest import on_reactor


def test_enqueue_writes_message_and_envelope(tmp_path):
    q = Queue(tmp_path / "queue")
    rcpts = [
        {"address": "a@remote.test", "notify": ["SUCCESS", "FAILURE"], "orcpt": "rfc822;a@x"},
        SimpleNamespace(address="b@remote.test", dsn_notify=None, dsn_orcpt=None),
        "c@remote.test",
    ]
    qid = q.enqueue("s@example.test", rcpts, b"Subject: x\r\n\r\nbody\r\n", "hdrs", "ENV1")
    head, _, message = (tmp_path / "queue" / "entries" / qid).read_bytes().partition(b"\n")
    assert message == b"Subject: x\r\n\r\nbody\r\n"
    env = json.loads(head)
    assert env["mail_from"] == "s@example.test"
    assert env["dsn_ret"] == "HDRS" and env["dsn_envid"] == "ENV1"
    assert [r["address"] for r in env["recipients"]] == [
        "a@remote.test",
        "b@remote.test",
        "c@remote.test",
    ]
    assert env["recipients"][0]["notify"] == ["SUCCESS", "FAILURE"]
    assert all(r["state"] == PENDING for r in env["recipients"])
    assert q.ids() == [qid]
    assert os.listdir(tmp_path / "queue" / "tmp") == []
    assert os.listdir(tmp_path / "queue" / "env") == []  # nothing changed yet


def test_changes_go_to_the_envelope_file_and_the_message_stays(tmp_path):
    q = Queue(tmp_path)
    data = b"Subject: x\r\n\r\n" + b"line\r\n" * 20000  # longer than one read of the spool file
    rcpts = [f"r{i}-" + "x" * 200 + "@r.test" for i in range(100)]  # a long envelope line too
    qid = q.enqueue("s@x.test", rcpts, data)
    spool = (tmp_path / "entries" / qid).read_bytes()
    entry = q.load(qid)
    entry.attempts = 2
    entry.recipients[0].state = FAILED
    assert q.save(entry) == "saved"
    assert (tmp_path / "entries" / qid).read_bytes() == spool
    again = Queue(tmp_path).load(qid)
    assert again.attempts == 2 and again.recipients[0].state == FAILED
    assert [r.address for r in again.recipients] == rcpts
    assert q.read_message(qid) == data
    assert q.remove(qid)
    assert os.listdir(tmp_path / "entries") == [] and os.listdir(tmp_path / "env") == []


def test_ids_sorted_by_arrival_and_unique(tmp_path):
    q = Queue(tmp_path)
    ids = [q.enqueue("", ["x@r.test"], b"m\r\n") for _ in range(20)]
    assert q.ids() == sorted(ids) == ids
    assert len(set(ids)) == 20


def test_leftovers_of_a_crash_are_not_entries(tmp_path):
    q = Queue(tmp_path)
    (tmp_path / "tmp" / "ABC123").write_bytes(b"half written")
    (tmp_path / "env" / "ABC124.json").write_bytes(b"{}")  # its entry was being removed
    assert q.ids() == []
    with pytest.raises(NoSuchEntry):
        q.load("ABC124")
    assert q.clean_orphans(older_than=0) == 2
    assert os.listdir(tmp_path / "tmp") == [] and os.listdir(tmp_path / "env") == []


def test_entries_of_the_two_file_layout_are_adopted(tmp_path):
    # Earlier versions kept msg/<id> and env/<id>.json; a start after the upgrade keeps them.
    (tmp_path / "msg").mkdir(parents=True)
    (tmp_path / "env").mkdir()
    old = QueueEntry(
        id="0005A1B2C3D4E5F60708",
        mail_from="s@x.test",
        recipients=[QueuedRecipient("r@r.test")],
        created=1.0,
        size=6,
        attempts=3,
    )
    (tmp_path / "msg" / old.id).write_bytes(b"m\r\nm\r\n")
    (tmp_path / "env" / f"{old.id}.json").write_bytes(json.dumps(old.to_json(), indent=1).encode())
    (tmp_path / "msg" / "0005A1B2C3D4E5F60709").write_bytes(b"never accepted")
    (tmp_path / "msg" / "0005A1B2C3D4E5F6070A").write_bytes(b"m\r\n")
    (tmp_path / "env" / "0005A1B2C3D4E5F6070A.json").write_bytes(b'{"id": ')
    q = Queue(tmp_path)
    assert not (tmp_path / "msg").exists()
    assert q.ids() == [old.id]
    assert q.load(old.id) == old and q.read_message(old.id) == b"m\r\nm\r\n"
    assert sorted(os.listdir(tmp_path / "corrupt")) == [
        "0005A1B2C3D4E5F6070A",
        "0005A1B2C3D4E5F6070A.json",
    ]
    assert q.clean_orphans(older_than=0) == 0
    assert q.remove(old.id) and os.listdir(tmp_path / "env") == []


def test_save_does_not_resurrect_deleted_entry(tmp_path):
    q = Queue(tmp_path)
    qid = q.enqueue("s@x.test", ["r@r.test"], b"m\r\n")
    entry = q.load(qid)
    assert q.remove(qid)
    entry.attempts = 3
    assert q.save(entry) == "deleted"
    with pytest.raises(NoSuchEntry):
        q.load(qid)


def test_modify_and_reload_round_trip(tmp_path):
    q = Queue(tmp_path)
    qid = q.enqueue("s@x.test", ["r@r.test", "t@r.test"], b"m\r\n")

    def fail_first(e):
        e.recipients[0].state = FAILED
        e.recipients[0].status = "5.1.1"

    q.modify(qid, fail_first)
    stale = q.load(qid)
    stale.generation -= 1
    assert q.save(stale) == "stale"
    again = Queue(tmp_path).load(qid)
    assert again.recipients[0].state == FAILED and again.recipients[0].status == "5.1.1"
    assert [r.address for r in again.pending] == ["t@r.test"]


def test_bad_ids_rejected(tmp_path):
    q = Queue(tmp_path)
    for bad in ["../etc/passwd", "", "a/b"]:
        with pytest.raises(NoSuchEntry):
            q.load(bad)


def test_trigger_taken_once(tmp_path):
    q = Queue(tmp_path)
    assert not q.take_trigger()
    q.trigger()
    assert q.take_trigger()
    assert not q.take_trigger()


def test_entry_whose_message_was_cut_short_by_a_crash_goes_to_corrupt(tmp_path):
    q = Queue(tmp_path)
    qid = q.enqueue("s@x.test", ["r@r.test"], b"Subject: x\r\n\r\nbody\r\n")
    kept = q.enqueue("s@x.test", ["r@r.test"], b"Subject: y\r\n\r\nbody\r\n")
    spool = tmp_path / "entries" / qid
    spool.write_bytes(spool.read_bytes()[:-3])  # what a crash before the fsync can leave
    unreadable = q.enqueue("s@x.test", ["r@r.test"], b"Subject: z\r\n\r\nbody\r\n")
    (tmp_path / "entries" / unreadable).write_bytes(b'{"id": ')
    assert q.clean_orphans() == 2
    assert q.ids() == [kept]
    assert sorted(os.listdir(tmp_path / "corrupt")) == sorted([qid, unreadable])


def test_envelope_json_round_trip_is_a_deep_copy(tmp_path):
    q = Queue(tmp_path / "queue")
    rcpt = SimpleNamespace(address="bob@remote.test", notify=["SUCCESS", "FAILURE"], orcpt=None)
    entry = q.load(q.enqueue("a@example.test", [rcpt], b"Subject: x\r\n\r\nx\r\n", "HDRS"))
    data = entry.to_json()
    assert data == dataclasses.asdict(entry)
    assert json.loads(json.dumps(data)) == data
    copy = QueueEntry.from_json(data)
    assert copy == entry
    copy.recipients[0].notify.append("DELAY")
    copy.recipients[0].state = FAILED
    assert entry.recipients[0].notify == ["SUCCESS", "FAILURE"]
    assert entry.recipients[0].state == PENDING


def test_listeners_each_get_their_own_entry(tmp_path):
    q = Queue(tmp_path)
    got: list = []
    q.add_listener(lambda entry, data: got.append((entry, data)))
    q.add_listener(lambda entry, data: got.append((entry, data)))
    qid = q.enqueue("s@x.test", ["r@r.test"], b"Subject: x\r\n\r\nbody\r\n")
    (first, data1), (second, data2) = got
    assert first == second == q.load(qid)
    assert data1 == data2 == b"Subject: x\r\n\r\nbody\r\n"
    first.recipients[0].state = FAILED  # one listener's change is not seen by the other
    assert second.recipients[0].state == PENDING


def test_enqueue_in_the_durable_pool_writes_an_entry_and_announces_it(tmp_path, reactor_running):
    q = Queue(tmp_path / "queue")
    announced: list = []
    q.add_listener(lambda entry, data: announced.append((entry, data)))
    data = b"Subject: x\r\n\r\nbody\r\n"
    qid = on_reactor(
        q.io.submit, q.enqueue, "a@example.test", ["r@remote.test"], data, "HDRS", "env-1"
    )
    assert q.ids() == [qid] and q.read_message(qid) == data
    entry = q.load(qid)
    assert (entry.mail_from, entry.size, entry.dsn_ret, entry.dsn_envid) == (
        "a@example.test",
        len(data),
        "HDRS",
        "env-1",
    )
    assert announced == [(entry, data)]
    assert os.listdir(q.tmp_dir) == []


def test_read_message_in_the_durable_pool(tmp_path, reactor_running):
    q = Queue(tmp_path / "queue")
    data = b"Subject: x\r\n\r\n" + b"line\r\n" * 4000
    qid = q.enqueue("a@example.test", ["r@remote.test"], data)
    assert on_reactor(q.io.submit, q.read_message, qid) == data
    many = q.enqueue("a@example.test", [f"r{i}-{'x' * 300}@remote.test" for i in range(100)], b"m")
    assert on_reactor(q.io.submit, q.read_message, many) == b"m"  # an envelope line of 30 KB
    assert q.read_message(many) == b"m"
    q.remove(qid)

    def gone():
        d = q.io.submit(q.read_message, qid)
        return d.addCallbacks(lambda _: None, lambda f: f.value)

    assert isinstance(on_reactor(gone), NoSuchEntry)


def test_enqueue_in_the_durable_pool_that_fails_leaves_nothing(tmp_path, reactor_running):
    q = Queue(tmp_path / "queue")
    announced: list = []
    q.add_listener(lambda entry, data: announced.append(entry))
    os.rmdir(q.entry_dir)
    q.entry_dir.write_bytes(b"")  # the rename fails, after the file was written and fsynced

    def attempt():
        d = q.io.submit(q.enqueue, "a@example.test", ["r@remote.test"], b"x\r\n")
        return d.addCallbacks(lambda qid: ("ok", qid), lambda f: ("error", f.value))

    kind, err = on_reactor(attempt)
    assert kind == "error" and isinstance(err, OSError)
    assert os.listdir(q.tmp_dir) == []
    assert announced == []


def test_enqueue_that_fails_leaves_nothing(tmp_path):
    q = Queue(tmp_path / "queue")
    os.rmdir(q.entry_dir)
    q.entry_dir.write_bytes(b"")  # the rename fails, after the file was written and fsynced
    with pytest.raises(OSError):
        q.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    assert os.listdir(q.tmp_dir) == []


def test_remove_many_in_the_durable_pool_removes_spool_files_and_envelopes(
    tmp_path, reactor_running
):
    q = Queue(tmp_path / "queue")
    # 100 entries: 200 unlinks in one batch, spool files first.
    ids = [q.enqueue("a@example.test", [f"r{i}@remote.test"], b"x\r\n") for i in range(100)]
    for qid in ids[:50]:
        q.modify(qid, lambda e: None)  # half of them with an envelope file
    (q.entry_dir / ids[1]).unlink()  # already gone: the others still go
    assert on_reactor(q.io.submit, q.remove_many, ids) == 99
    assert os.listdir(q.env_dir) == [] and os.listdir(q.entry_dir) == []


def test_remove_many_in_the_durable_pool_waits_for_the_admin_commands_lock(
    reactor_running, tmp_path
):
    import fcntl
    import threading

    q = Queue(tmp_path / "queue")
    qid = q.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    holder = os.open(q.path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    release = threading.Timer(0.3, os.close, [holder])
    release.start()
    started = time.monotonic()
    try:
        assert on_reactor(q.io.submit, q.remove_many, [qid]) == 1
    finally:
        release.join()
    assert time.monotonic() - started >= 0.25  # it waited for the lock, and the reactor did not
    assert q.ids() == []


def test_removal_of_an_entry_without_envelope_file_unlinks_only_its_spool_file(
    tmp_path, monkeypatch
):
    q = Queue(tmp_path / "queue")
    queued = q.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")  # queued here
    changed = q.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    q.modify(changed, lambda e: None)  # has env/<id>.json
    other = Queue(tmp_path / "queue")
    read = other.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    q.load(read)  # read here from its spool file: no envelope file
    unlinked = []
    real_unlink = os.unlink
    monkeypatch.setattr(os, "unlink", lambda p, *a, **k: (unlinked.append(p), real_unlink(p))[1])
    assert q.remove_many([queued, changed, read]) == 3
    names = sorted(os.path.relpath(p, q.path) for p in unlinked)
    assert names == sorted(
        [f"entries/{queued}", f"entries/{changed}", f"env/{changed}.json", f"entries/{read}"]
    )
    assert os.listdir(q.env_dir) == [] and q.ids() == []


def test_envelope_written_by_another_process_during_delivery_is_left_nobodys_then_cleaned(
    tmp_path,
):
    server = Queue(tmp_path / "queue")
    qid = server.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    Queue(tmp_path / "queue").modify(qid, lambda e: None)  # `queue retry` meanwhile
    assert server.remove_many([qid]) == 1
    admin = Queue(tmp_path / "queue")
    assert admin.ids() == [] and list(admin.entries()) == []
    with pytest.raises(NoSuchEntry):
        admin.load(qid)
    assert admin.clean_orphans(older_than=0) == 1
    assert os.listdir(admin.env_dir) == []


def test_queue_lock_held_open_still_orders_threads_and_lets_other_processes_in(tmp_path):
    import fcntl
    import threading

    q = Queue(tmp_path / "queue")
    qid = q.enqueue("a@example.test", ["r@remote.test"], b"x\r\n")
    inside, leave = threading.Event(), threading.Event()

    def change(entry):
        inside.set()
        assert leave.wait(5)
        entry.attempts = 7

    modifier = threading.Thread(target=q.modify, args=(qid, change))
    modifier.start()
    assert inside.wait(5)
    removed = []
    remover = threading.Thread(target=lambda: removed.append(q.remove_many([qid])))
    remover.start()
    remover.join(0.3)
    assert remover.is_alive()  # waits for the other thread's hold of the lock
    other = os.open(q.path / "lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):  # and so does another process
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        leave.set()
        modifier.join(5)
        remover.join(5)
        assert removed == [1] and q.ids() == []
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # let go after each use
    finally:
        os.close(other)
