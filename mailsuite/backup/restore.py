"""`mailsuite restore SRC`: a snapshot made by `mailsuite backup` put back into data_dir.

Only onto an empty data folder: restoring over live data would mix two histories of UIDs, and a
running server (which keeps mail/ and queue/ there) is never overwritten. Files keep their
names, so UIDs and UIDVALIDITY come back with each folder's dovecot-uidlist; message files keep
their mtimes. Every file is private (0600/0700), owned by whoever runs the restore (the admin
command, started as root, becomes the server's `user` first).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailsuite.backup.snapshot import FORMAT, LATEST, MANIFEST, is_message_path
from mailsuite.durable.modes import make_private_dirs, private_opener

COPY_CHUNK = 1024 * 1024


class NotABackup(Exception):
    """SRC is not a complete mailsuite snapshot (exit 65, EX_DATAERR)."""


class DataDirNotEmpty(Exception):
    """data_dir already holds something (exit 73, EX_CANTCREAT)."""


@dataclass
class Restored:
    snapshot: Path
    files: int = 0
    messages: int = 0
    linked: int = 0
    copied_bytes: int = 0


def find_snapshot(src: Path) -> tuple[Path, dict]:
    """SRC is a snapshot (has manifest.json) or a backup folder (its `latest` snapshot)."""
    snap = src
    if not (src / MANIFEST).is_file():
        try:
            name = (src / LATEST).read_text().strip()
        except OSError:
            raise NotABackup(
                f"{src} is not a mailsuite backup (no {MANIFEST} or {LATEST})"
            ) from None
        if not name or "/" in name or name in (".", ".."):
            raise NotABackup(f"{src / LATEST} does not name a snapshot")
        snap = src / name
    try:
        manifest = json.loads((snap / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise NotABackup(f"{snap}: unreadable {MANIFEST}: {e}") from None
    if manifest.get("format") != FORMAT:
        raise NotABackup(f"{snap}: backup format {manifest.get('format')!r}, expected {FORMAT}")
    if not (snap / "data" / "mail").is_dir():
        raise NotABackup(f"{snap} has no data/mail/ folder")
    return snap, manifest


def check_empty(data_dir: Path) -> None:
    if data_dir.exists():
        if not data_dir.is_dir():
            raise DataDirNotEmpty(f"{data_dir} exists and is not a folder")
        left = next(iter(os.scandir(data_dir)), None)
        if left is not None:
            raise DataDirNotEmpty(
                f"the data folder {data_dir} is not empty ({left.name} and maybe more): "
                "restore only fills an empty one (stop the server, move the folder aside)"
            )


def plan_restore(snap: Path) -> list[str]:
    """The snapshot's folders (ending in "/") and files, each folder before what it holds."""
    data = snap / "data"
    files = []
    for top, dirs, names in os.walk(data):
        dirs.sort()
        here = Path(top)
        files.append(str(here.relative_to(data)) + "/")
        files.extend(str((here / n).relative_to(data)) for n in sorted(names))
    return files


def restore_snapshot(
    src: Path,
    data_dir: Path,
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> Restored:
    """Put the snapshot in `src` back into the empty `data_dir` (blocking)."""
    snap, _ = find_snapshot(src)
    check_empty(data_dir)
    make_private_dirs(data_dir)
    files = plan_restore(snap)
    if started is not None:
        started(len(files))
    step = progress or (lambda n: None)
    data = snap / "data"
    same_fs = os.stat(data).st_dev == os.stat(data_dir).st_dev
    done = Restored(snapshot=snap)
    for rel in files:
        if rel.endswith("/"):  # a folder, made even when empty (an empty Maildir folder)
            make_private_dirs(data_dir / rel)
            step(1)
            continue
        src_file, dst = data / rel, data_dir / rel
        make_private_dirs(dst.parent)
        message = is_message_path(Path(rel))
        if message and same_fs:
            # A message file never changes in place: the backup and the store may share it.
            os.link(src_file, dst)
            done.linked += 1
        else:
            with open(src_file, "rb") as fin, open(dst, "xb", opener=private_opener) as fout:
                shutil.copyfileobj(fin, fout, COPY_CHUNK)
            done.copied_bytes += os.stat(dst).st_size
            if message:
                st = os.stat(src_file)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
        done.files += 1
        done.messages += message
        step(1)
    for sub in ("mail", "queue"):
        make_private_dirs(data_dir / sub)
    return done
