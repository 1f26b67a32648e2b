"""The modes of what mailsuite writes: its files are 0600 and its folders 0700, whatever umask
the server or the admin command was started with (mail, password hashes and the queue are
nobody else's business). Every creation names its mode; the umask the processes set at start
(`UMASK`) only covers what a library creates behind our back.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
# Set by `mailsuite serve` and the admin command at start: nothing for "other", and the group
# may read what a library creates with its own default mode.
UMASK = 0o027


def private_opener(path: str | os.PathLike, flags: int) -> int:
    """An `opener` for `open()`: a file it creates is 0600."""
    return os.open(path, flags, FILE_MODE)


def make_private_dirs(path: str | os.PathLike) -> list[Path]:
    """`mkdir -p` where every folder created is 0700 (`Path.mkdir(parents=True)` gives the
    parents the umask's default); existing folders are left as they are. Returns the folders
    it created, outermost first."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
            created.append(folder)
        except FileExistsError:
            if not folder.is_dir():
                raise
    return created


def create_private_file(path: str | os.PathLike) -> None:
    """Create `path` empty with mode 0600 unless it exists: SQLite creates a database 0644 and
    gives its -wal and -shm files the database's own mode, so creating it first decides all
    three."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
