"""The durable write's quick system calls (durable/quick.py) give what the `os` functions give,
results and errors alike, through the C library and through the plain fall-back."""

from __future__ import annotations

import errno
import os

import pytest

from mailsuite.durable import DurableIO, quick


@pytest.fixture(params=["libc", "os"])
def way(request, monkeypatch):
    """Each test runs through the C library and through the `os` fall-back."""
    if request.param == "libc":
        assert quick.USE_LIBC, "this system's C library should load through ctypes"
    else:
        monkeypatch.setattr(quick, "USE_LIBC", False)
    return request.param


def test_append_close_rename(tmp_path, way):
    path = tmp_path / "new"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"one\n")
    assert quick.append(fd, b"two\n") == 4
    quick.close(fd)
    assert path.read_bytes() == b"one\ntwo\n"
    with pytest.raises(OSError):
        os.fstat(fd)  # closed
    quick.rename(path, tmp_path / "renamed")
    assert not path.exists() and (tmp_path / "renamed").read_bytes() == b"one\ntwo\n"
    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        quick.rename(tmp_path / "renamed", "again", dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    assert (tmp_path / "again").read_bytes() == b"one\ntwo\n"


def test_errors_are_the_os_errors(tmp_path, way):
    with pytest.raises(FileNotFoundError) as e:
        quick.rename(tmp_path / "missing", tmp_path / "x")
    assert e.value.errno == errno.ENOENT and e.value.filename == str(tmp_path / "missing")
    with pytest.raises(OSError) as e:
        quick.close(_unused_fd())
    assert e.value.errno == errno.EBADF
    with pytest.raises(OSError) as e:
        quick.append(_unused_fd(), b"x")
    assert e.value.errno == errno.EBADF
    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(ValueError):
        quick.rename(tmp_path / "a", str(tmp_path / "b\0c"))
    assert (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_durable_write_through_either_way(tmp_path, way):
    """The service's write (synced create, rename into place, folder fsync) on each way."""
    io = DurableIO(threads=1)
    try:
        io.write_file(tmp_path / "tmp-1", b"message\n", tmp_path / "final-1")
        (tmp_path / "sub").mkdir()
        fd = io.commit.folder_fd(str(tmp_path / "sub"))
        io.write_file(tmp_path / "tmp-2", b"held\n", tmp_path / "sub" / "final-2", held=True)
        assert fd is not None
    finally:
        io.stop()
    assert (tmp_path / "final-1").read_bytes() == b"message\n"
    assert (tmp_path / "sub" / "final-2").read_bytes() == b"held\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final-1", "sub"]


def _unused_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd
