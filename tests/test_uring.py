"""io_uring chains on real files, and mailsuite.durable's asynchronous writes through each of
its three ways to the disk (io_uring, Linux AIO fsyncs, the thread pool): the same files, the
same clean-up when a step fails."""

from __future__ import annotations

import errno
import os

import pytest

from mailsuite import aiofsync, durable, uring
from tests.conftest import on_reactor


def outcome(make):
    """Run make() on the reactor thread and wait: ("ok", value) or ("error", exception)."""
    return on_reactor(
        lambda: make().addCallbacks(lambda v: ("ok", v), lambda f: ("error", f.value))
    )


@pytest.fixture
def ring(reactor_running):
    try:
        r = on_reactor(uring.Ring)
    except OSError as e:  # pragma: no cover - a kernel or sandbox without io_uring
        pytest.fail(f"io_uring unavailable here: {e}")
    yield r
    on_reactor(r.close)


def delivery_steps(tmp: bytes, dest: bytes, data: bytes) -> list[tuple]:
    return [
        uring.open_new(tmp),
        uring.write(data),
        uring.FSYNC,
        uring.CLOSE,
        uring.rename(tmp, dest),
        uring.open_dir(os.path.dirname(dest)),
        uring.FSYNC,
        uring.CLOSE,
    ]


def test_a_chain_writes_renames_and_syncs(ring, tmp_path):
    tmp, dest = bytes(tmp_path / "a"), bytes(tmp_path / "b")
    data = b"x" * 100_000
    kind, results = outcome(lambda: ring.run(delivery_steps(tmp, dest, data)))
    assert kind == "ok" and results == [0, len(data), 0, 0, 0, 0, 0, 0]
    assert os.listdir(tmp_path) == ["b"] and (tmp_path / "b").read_bytes() == data


def test_a_chain_reads_less_than_its_buffer_and_still_closes(ring, tmp_path):
    (tmp_path / "f").write_bytes(b"short")
    buf = bytearray(b"-" * 10)
    steps = [uring.open_read(bytes(tmp_path / "f")), uring.read(buf), uring.CLOSE]
    assert outcome(lambda: ring.run(steps)) == ("ok", [0, 5, 0])
    assert buf == b"short-----"
    assert len(ring._free) == uring._SLOTS  # the slot is free again: the close ran
    kind, err = outcome(lambda: ring.run([uring.open_read(bytes(tmp_path / "no")), *steps[1:]]))
    assert kind == "error" and (err.step, err.errno) == (0, errno.ENOENT)


def test_a_failed_rename_is_reported_though_the_kernel_runs_the_later_steps(ring, tmp_path):
    tmp, dest = bytes(tmp_path / "a"), bytes(tmp_path / "missing" / "b")
    kind, err = outcome(lambda: ring.run(delivery_steps(tmp, dest, b"data")))
    assert kind == "error" and isinstance(err, uring.ChainFailed)
    assert (err.step, err.errno) == (4, errno.ENOENT)
    assert err.results[:4] == [0, 4, 0, 0] and err.results[4] == -errno.ENOENT
    assert os.listdir(tmp_path) == ["a"]


def test_a_failed_create_cancels_the_rest(ring, tmp_path):
    (tmp_path / "a").write_bytes(b"someone else's")
    tmp, dest = bytes(tmp_path / "a"), bytes(tmp_path / "b")
    kind, err = outcome(lambda: ring.run(delivery_steps(tmp, dest, b"data")))
    assert kind == "error" and (err.step, err.errno) == (0, errno.EEXIST)
    assert set(err.results[1:]) == {-errno.ECANCELED}
    assert sorted(os.listdir(tmp_path)) == ["a"]
    assert (tmp_path / "a").read_bytes() == b"someone else's"


def test_more_chains_than_file_slots_all_complete(ring, tmp_path):
    count = uring._SLOTS * 2 + 7

    def many():
        from twisted.internet import defer

        chains = []
        for i in range(count):
            tmp, dest = bytes(tmp_path / f"t{i}"), bytes(tmp_path / f"n{i}")
            chains.append(ring.run(delivery_steps(tmp, dest, b"%d" % i)))
        return defer.gatherResults(chains)

    kind, _ = outcome(many)
    assert kind == "ok"
    names = os.listdir(tmp_path)
    assert len(names) == count and all(n.startswith("n") for n in names)
    assert (tmp_path / "n42").read_bytes() == b"42"
    assert len(ring._free) == uring._SLOTS and not ring._chains and not ring._waiting


@pytest.fixture(params=["uring", "aio", "threads"])
def way(request, reactor_running, monkeypatch):
    """Which of mailsuite.durable's ways to the disk the test goes through."""
    if request.param == "uring":
        assert on_reactor(durable._uring) is not None, "io_uring unavailable here"
    else:
        monkeypatch.setattr(durable, "_ring", False)
    if request.param == "threads":
        monkeypatch.setattr(aiofsync, "_backend", False)
    return request.param


@pytest.mark.parametrize("size", [10, aiofsync.SMALL_WRITE + 1])
def test_write_async_with_a_rename(way, tmp_path, size):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "new").mkdir()
    data = os.urandom(size)
    tmp, dest = str(tmp_path / "tmp" / "k"), str(tmp_path / "new" / "k")
    assert outcome(lambda: durable.write_async(tmp, data, rename_to=dest)) == ("ok", None)
    assert os.listdir(tmp_path / "tmp") == [] and (tmp_path / "new" / "k").read_bytes() == data


def test_write_async_leaves_nothing_when_the_rename_fails(way, tmp_path):
    (tmp_path / "tmp").mkdir()
    (tmp_path / "new").write_bytes(b"not a folder")
    tmp, dest = str(tmp_path / "tmp" / "k"), str(tmp_path / "new" / "k")
    kind, err = outcome(lambda: durable.write_async(tmp, b"data", rename_to=dest))
    assert kind == "error" and isinstance(err, NotADirectoryError)
    assert os.listdir(tmp_path / "tmp") == []
    assert (tmp_path / "new").read_bytes() == b"not a folder"


def test_write_async_never_removes_a_file_it_did_not_create(way, tmp_path):
    path = tmp_path / "taken"
    path.write_bytes(b"someone else's")
    kind, err = outcome(lambda: durable.write_async(str(path), b"mine"))
    assert kind == "error" and isinstance(err, FileExistsError)
    assert path.read_bytes() == b"someone else's"


@pytest.mark.parametrize("size", [0, 5, 100_000])
def test_read_async_reads_up_to_its_limit(way, tmp_path, size):
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert outcome(lambda: durable.read_async(str(tmp_path / "f"), 70_000)) == ("ok", data[:70_000])
    kind, err = outcome(lambda: durable.read_async(str(tmp_path / "missing"), 10))
    assert kind == "error" and isinstance(err, FileNotFoundError)


def test_step_buffers_are_addressed_where_ctypes_finds_them():
    for data in (b"", b"x", os.urandom(100), os.urandom(1 << 20), "pth/ä".encode()):
        assert uring._address(data) == uring._ctypes_address(data)
    with pytest.raises(TypeError):
        uring._address(bytearray(b"not immutable"))


def test_a_chain_longer_than_the_ring_allows_is_refused(ring, tmp_path):
    steps = [uring.unlink(bytes(tmp_path / f"f{i}")) for i in range(uring.MAX_STEPS + 1)]
    with pytest.raises(ValueError):
        on_reactor(ring.run, steps)
