"""The durable-I/O service on real files: durable writes that leave nothing behind when they
fail, directory fsyncs merged by group commit, reads and removals, and the pool replaced when
it fails instead of failing deliveries."""

from __future__ import annotations

import os
import smtplib
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.python.threadable import isInIOThread

from mailsuite.durable import DurableIO, GroupCommit
from mailsuite.durable import commit as commit_mod
from mailsuite.durable.service import split_path
from mailsuite.store import Store
from tests.conftest import on_reactor


def outcome(make):
    """Run make() on the reactor thread and wait: ("ok", value) or ("error", exception)."""
    return on_reactor(
        lambda: make().addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.value))
    )


@pytest.fixture
def io(reactor_running):
    service = on_reactor(DurableIO)
    yield service
    service.stop()


@pytest.fixture
def folders(tmp_path):
    for name in ("tmp", "new"):
        (tmp_path / name).mkdir()
    return tmp_path


def test_the_probe_writes_on_data_dirs_filesystem_and_leaves_nothing(reactor_running, tmp_path):
    service = DurableIO.open(tmp_path)
    try:
        assert os.listdir(tmp_path) == []
    finally:
        service.stop()


@pytest.mark.parametrize("size", [10, 3_000_000])
def test_write_file_renames_into_place(io, folders, size):
    data = os.urandom(size)
    tmp, final = folders / "tmp" / "a", folders / "new" / "a"
    assert outcome(lambda: io.submit(io.write_file, tmp, data, final)) == ("ok", None)
    assert os.listdir(folders / "tmp") == [] and (folders / "new" / "a").read_bytes() == data


def test_the_blocking_call_is_the_same_work_in_the_callers_thread(io, folders):
    io.write_file(folders / "tmp" / "a", b"data", folders / "new" / "a", mtime=1_000_000_000)
    assert (folders / "new" / "a").read_bytes() == b"data"
    assert (folders / "new" / "a").stat().st_mtime == 1_000_000_000
    assert os.listdir(folders / "tmp") == []


def test_a_failed_rename_leaves_nothing(io, folders):
    tmp, final = folders / "tmp" / "a", folders / "missing" / "a"
    kind, err = outcome(lambda: io.submit(io.write_file, tmp, b"data", final))
    assert kind == "error" and isinstance(err, FileNotFoundError)
    assert os.listdir(folders / "tmp") == []


def test_a_file_it_did_not_create_is_never_removed(io, folders):
    (folders / "tmp" / "a").write_bytes(b"someone else's")
    kind, err = outcome(lambda: io.submit(io.write_file, folders / "tmp" / "a", b"x"))
    assert kind == "error" and isinstance(err, FileExistsError)
    assert (folders / "tmp" / "a").read_bytes() == b"someone else's"


def test_read_reads_up_to_its_limit(io, tmp_path):
    (tmp_path / "f").write_bytes(b"0123456789")
    assert outcome(lambda: io.submit(io.read, tmp_path / "f", 4)) == ("ok", b"0123")
    assert outcome(lambda: io.submit(io.read, tmp_path / "f", 100)) == ("ok", b"0123456789")
    kind, err = outcome(lambda: io.submit(io.read, tmp_path / "none", 4))
    assert kind == "error" and isinstance(err, FileNotFoundError)


def test_unlink_reports_each_path(io, tmp_path):
    (tmp_path / "a").write_bytes(b"")
    paths = [str(tmp_path / "a"), str(tmp_path / "b")]
    kind, results = outcome(lambda: io.submit(io.unlink, paths))
    assert kind == "ok" and results[0] == 0 and results[1] < 0
    assert os.listdir(tmp_path) == []


def test_concurrent_directory_fsyncs_are_merged(tmp_path):
    commit = GroupCommit()
    n = 16
    start = threading.Barrier(n)
    errors: list = []

    def sync():
        start.wait()
        try:
            commit.fsync_dir(tmp_path)
        except OSError as e:  # pragma: no cover - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=sync) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Callers that arrive during an fsync share the next one.
    assert 1 <= commit.syncs < n


def test_a_failed_directory_fsync_fails_every_caller_it_covers(tmp_path):
    commit = GroupCommit()
    errors: list = []

    def sync():
        try:
            commit.fsync_dir(tmp_path / "missing")
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=sync) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 8 and all(isinstance(e, FileNotFoundError) for e in errors)
    commit.fsync_dir(tmp_path)  # a later fsync of a good folder is unaffected


def test_a_dead_pool_is_replaced_and_deliveries_go_on(io, tmp_path):
    store = Store(tmp_path, io)
    mbox = store.create_mailbox("u@example.test")
    io.stop()  # the pool is gone: it takes no more work
    kind, key = outcome(lambda: mbox.deliver_async(b"Subject: x\r\n\r\nbody\r\n"))
    assert kind == "ok" and io.fallbacks == 1
    assert os.listdir(mbox.folder_path("INBOX") / "new") == [key]


def test_a_caller_is_covered_only_by_an_fsync_that_started_after_its_call(tmp_path, monkeypatch):
    """Callers that arrive while a folder's fsync runs are not covered by it (their renames may
    have missed it): they share the next one, which starts after all of them."""
    events: list[tuple[str, float]] = []
    first_started = threading.Event()
    release_first = threading.Event()
    real_fsync = os.fsync

    def observed_fsync(fd):
        events.append(("start", time.monotonic()))
        if not first_started.is_set():
            first_started.set()
            release_first.wait(5)
        real_fsync(fd)
        events.append(("end", time.monotonic()))

    monkeypatch.setattr(commit_mod.os, "fsync", observed_fsync)
    gc = GroupCommit()
    returned: dict[str, float] = {}
    called: dict[str, float] = {}

    def caller(name):
        called[name] = time.monotonic()
        gc.fsync_dir(tmp_path)
        returned[name] = time.monotonic()

    leader = threading.Thread(target=caller, args=("leader",))
    leader.start()
    assert first_started.wait(5)
    late = [threading.Thread(target=caller, args=(f"late{i}",)) for i in range(3)]
    for t in late:
        t.start()
    time.sleep(0.2)  # they are all waiting now, behind the first fsync
    assert not any(name.startswith("late") for name in returned)
    release_first.set()
    for t in [leader, *late]:
        t.join(5)
    assert gc.syncs == 2  # one for the leader, one shared by the three that came later
    second_start = [t for kind, t in events if kind == "start"][1]
    for i in range(3):
        assert called[f"late{i}"] < second_start < returned[f"late{i}"]


def test_call_soon_from_a_job_runs_on_the_reactor_with_that_jobs_result(io, tmp_path):
    seen: list = []

    def work():
        io.call_soon(lambda tag: seen.append((tag, isInIOThread())), "from the job")
        return "result"

    def run():
        return io.submit(work).addCallback(lambda value: seen.append((value, isInIOThread())))

    on_reactor(run)
    # The call rode with the job's result: both ran on the reactor, the call first.
    assert seen == [("from the job", True), ("result", True)]


def test_call_soon_from_a_job_wakes_the_reactor_only_with_that_jobs_result(io):
    events: list = []

    def work():
        io.call_soon(lambda: events.append("call"))
        time.sleep(0.3)  # a reactor woken by the call_soon itself would run it meanwhile
        events.append("job returned")

    on_reactor(lambda: io.submit(work))
    assert events == ["job returned", "call"]


def test_call_soon_from_another_thread_runs_on_the_reactor(io):
    done = threading.Event()
    seen: list = []

    def call(value):
        seen.append((value, isInIOThread()))
        done.set()

    threading.Thread(target=io.call_soon, args=(call, 7)).start()
    assert done.wait(10)
    assert seen == [(7, True)]
    on_reactor(lambda: defer.succeed(None))  # the reactor still runs after it


def test_a_call_soon_that_raises_does_not_stop_the_results_after_it(io):
    def work():
        io.call_soon(lambda: 1 / 0)
        return "still delivered"

    assert outcome(lambda: io.submit(work)) == ("ok", "still delivered")


@pytest.mark.parametrize("size", [0, 1, 256 * 1024 - 1, 256 * 1024, 256 * 1024 + 1, 3_000_000])
def test_read_all_reads_whole_files_of_any_size(io, tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert outcome(lambda: io.submit(io.read_all, tmp_path / "f")) == ("ok", data)


def test_a_held_folder_is_fsynced_through_its_open_descriptor(tmp_path, monkeypatch):
    held, other = tmp_path / "held", tmp_path / "other"
    held.mkdir()
    other.mkdir()
    group = GroupCommit()
    group.hold(held)
    synced: list[int] = []
    real_fsync = os.fsync

    def no_open(*args, **kwargs):
        raise PermissionError("opened")

    def fsync(fd):
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(commit_mod.os, "open", no_open)
    monkeypatch.setattr(commit_mod.os, "fsync", fsync)
    group.fsync_dir(held)  # no open: the descriptor held since hold()
    assert len(synced) == 1 and group.syncs == 1
    with pytest.raises(PermissionError):
        group.fsync_dir(other)  # any other folder is opened for its fsync


def test_a_held_folder_gets_the_renames_and_its_own_fsync(io, folders, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def observed_fsync(fd):
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(commit_mod.os, "fsync", observed_fsync)
    new = str(folders / "new")
    for name in ("a", "b"):
        (folders / "tmp" / name).write_bytes(name.encode())
        io.place(folders / "tmp" / name, f"{new}/{name}", held=True)
    assert sorted(os.listdir(new)) == ["a", "b"] and os.listdir(folders / "tmp") == []
    assert synced == [os.stat(new).st_ino] * 2
    fd = io.commit.folder_fd(new)
    assert fd is not None and io.commit.folder_fd(new) == fd  # opened once, then held


def test_a_held_folder_removed_and_made_again_gets_the_next_rename_by_path(io, folders):
    """The held descriptor names the removed directory: the rename through it fails, the
    file goes into the folder now at that path, and that folder is the one fsynced."""
    new = folders / "new"
    (folders / "tmp" / "a").write_bytes(b"a")
    io.place(folders / "tmp" / "a", new / "a", held=True)
    old_fd = io.commit.folder_fd(str(new))
    (new / "a").unlink()
    new.rmdir()
    new.mkdir()
    (folders / "tmp" / "b").write_bytes(b"b")
    io.place(folders / "tmp" / "b", new / "b", held=True)
    assert os.listdir(new) == ["b"] and os.listdir(folders / "tmp") == []
    fresh = io.commit.folder_fd(str(new))
    assert fresh != old_fd and os.fstat(fresh).st_ino == os.stat(new).st_ino


def test_folders_held_on_demand_are_bounded(io, tmp_path, monkeypatch):
    monkeypatch.setattr(commit_mod, "HELD_FOLDERS", 2)
    dirs = [tmp_path / str(i) for i in range(3)]
    for d in dirs:
        d.mkdir()
    fds = [io.commit.folder_fd(str(d)) for d in dirs]
    assert fds[0] is not None and fds[1] is not None and fds[2] is None
    (tmp_path / "f").write_bytes(b"x")
    io.place(tmp_path / "f", dirs[2] / "f", held=True)  # past the bound: by path
    assert os.listdir(dirs[2]) == ["f"]


def test_a_config_naming_the_old_uring_backend_starts_on_threads_and_says_so(server_factory, logs):
    # A self-hoster's configuration from before must never stop the server at upgrade.
    server = server_factory(storage={"io": "uring"})
    server.add_user("alice@example.test")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        for i in range(5):
            s.sendmail("a@remote.test", ["alice@example.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n")
    bodies = server.messages("alice@example.test")
    assert len(bodies) == 5 and all(b"body " in b for b in bodies)
    assert logs.matching('[storage] io = "uring" is no longer offered; using threads')
    assert logs.matching("durable writes: 32 threads with group commit")


@given(st.text(alphabet="ab/.", max_size=10))
def test_split_path_is_os_path_split(path):
    assert split_path(path) == os.path.split(path)
