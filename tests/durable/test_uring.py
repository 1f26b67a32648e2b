"""The opt-in io_uring backend (`[storage] io = "uring"`) on real files and the real kernel:
the same durable writes as the default, nothing left behind when a step fails, and a kernel
that refuses io_uring (at start or later) turning the service back to plain calls instead of
failing deliveries.  Skipped where the kernel has no io_uring for us (seccomp, old kernels)."""

from __future__ import annotations

import os
import shutil
import smtplib

import pytest

from mailsuite.durable import DurableIO, uring
from tests.conftest import on_reactor


def _ring_works() -> bool:
    try:
        uring.Ring().close()
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ring_works(), reason="io_uring refused by this kernel")


@pytest.fixture
def folders(tmp_path):
    for name in ("tmp", "new"):
        (tmp_path / name).mkdir()
    return tmp_path


@pytest.fixture
def io(reactor_running):
    service = on_reactor(lambda: DurableIO(backend="uring"))
    yield service
    service.stop()


def wait(make):
    return on_reactor(
        lambda: make().addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.value))
    )


@pytest.mark.parametrize("size", [0, 1, 5000, 3 * 1024 * 1024 + 7])
def test_a_chained_write_puts_the_whole_file_under_its_final_name(io, folders, size):
    data = os.urandom(size)
    tmp, final = str(folders / "tmp" / "m"), str(folders / "new" / "m")
    assert wait(lambda: io.submit(io.write_file, tmp, data, final)) == ("ok", None)
    assert (folders / "new" / "m").read_bytes() == data
    assert os.stat(final).st_mode & 0o777 == 0o600 & ~_umask()
    assert os.listdir(folders / "tmp") == []
    assert io.backend == "uring" and io.fallbacks == 0


def test_a_write_into_a_held_folder_renames_through_its_descriptor(io, folders):
    tmp, final = str(folders / "tmp" / "m"), str(folders / "new" / "m")
    io.write_file(tmp, b"held", final, held=True)
    assert io.commit.folder_fd(str(folders / "new")) is not None
    assert (folders / "new" / "m").read_bytes() == b"held"


def test_a_held_folder_removed_and_made_again_gets_the_write_by_path(io, folders):
    new = folders / "new"
    io.write_file(str(folders / "tmp" / "a"), b"a", str(new / "a"), held=True)
    shutil.rmtree(new)
    new.mkdir()
    io.write_file(str(folders / "tmp" / "b"), b"b", str(new / "b"), held=True)
    assert os.listdir(new) == ["b"]
    assert os.listdir(folders / "tmp") == []


def test_a_failed_rename_leaves_nothing(io, folders):
    tmp = str(folders / "tmp" / "m")
    kind, error = wait(lambda: io.submit(io.write_file, tmp, b"x", str(folders / "gone" / "m")))
    assert kind == "error" and isinstance(error, FileNotFoundError)
    assert os.listdir(folders / "tmp") == []


def test_a_file_it_did_not_create_is_never_removed(io, folders):
    (folders / "tmp" / "m").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        io.write_file(str(folders / "tmp" / "m"), b"mine", str(folders / "new" / "m"))
    assert (folders / "tmp" / "m").read_bytes() == b"someone else's"
    assert os.listdir(folders / "new") == []


def test_a_failed_write_frees_the_rings_slots_for_the_next(io, folders):
    for i in range(3):
        with pytest.raises(FileNotFoundError):
            io.write_file(str(folders / "tmp" / f"f{i}"), b"x", str(folders / "gone" / "f"))
    io.write_file(str(folders / "tmp" / "ok"), b"fine", str(folders / "new" / "ok"))
    assert (folders / "new" / "ok").read_bytes() == b"fine"


def test_a_kernel_refusing_io_uring_at_start_leaves_the_default(tmp_path, monkeypatch):
    # A system call number no kernel has: the real kernel answers ENOSYS, as under a seccomp
    # filter that forbids io_uring.
    monkeypatch.setattr(uring, "_SYS_SETUP", 999_999)
    monkeypatch.setattr(uring, "_local", type(uring._local)())
    io = DurableIO.open(tmp_path, backend="uring")
    assert io.backend == "threads"
    assert os.listdir(tmp_path) == []


def test_a_ring_failing_at_run_time_falls_back_without_failing_the_delivery(
    io, folders, monkeypatch
):
    io.write_file(str(folders / "tmp" / "a"), b"a", str(folders / "new" / "a"))
    monkeypatch.setattr(uring, "_SYS_ENTER", 999_999)
    tmp, final = str(folders / "tmp" / "b"), str(folders / "new" / "b")
    assert wait(lambda: io.submit(io.write_file, tmp, b"b", final)) == ("ok", None)
    assert (folders / "new" / "b").read_bytes() == b"b"
    assert io.backend == "threads" and io.fallbacks == 1
    assert os.listdir(folders / "tmp") == []


def test_a_server_on_the_uring_backend_delivers_smtp_mail(server_factory):
    server = server_factory(storage={"io": "uring"})
    server.add_user("alice@example.test")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        for i in range(20):
            s.sendmail("a@remote.test", ["alice@example.test"], f"Subject: {i}\r\n\r\nbody {i}\r\n")
    assert server.services.store.io.backend == "uring"
    bodies = server.messages("alice@example.test")
    assert len(bodies) == 20 and all(b"body " in b for b in bodies)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
