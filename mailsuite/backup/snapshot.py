"""`mailsuite backup DEST`: a consistent snapshot of data_dir while the server runs.

A backup folder holds one snapshot per run (`DEST/<UTC time>/`: `data/`, a copy of data_dir,
and `manifest.json`, written last) and `DEST/latest`, naming the newest complete snapshot. Each
snapshot is whole on its own; what makes the next one cheap is that Maildir message files never
change once written (a flag change renames them, keeping the part before ":2,"), so a message
already in the previous snapshot is hard-linked from it, not copied again. On the first run
message files are hard-linked from data_dir itself when DEST is on the same filesystem.

What is consistent, and how:
- SQLite databases (found by their header, wherever they are: accounts, caches, whatever
  another part keeps) through SQLite's online backup API, so a write in progress is either in
  the copy or not; their -wal/-shm/-journal files are left out (the copy has it all).
- Message files are listed first and their folders' state files (dovecot-uidlist, ...) copied
  after them: every message in the copy has its UID in the copied uidlist. A message renamed
  (flags) between listing and linking is found again under its new name.
- Files in Maildir `tmp/` (deliveries not yet acknowledged) and the queue's `tmp/` are left out;
  a file that disappears while we copy it (a delivered queue entry, an expunged message) was
  gone at the end of the backup anyway.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mailsuite.durable.modes import FILE_MODE, make_private_dirs, private_opener

FORMAT = 1
MANIFEST = "manifest.json"
LATEST = "latest"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")
# Probes that the server and the health check create and remove at once.
TRANSIENT_PREFIXES = (".write-test.", ".health-probe.")
COPY_CHUNK = 1024 * 1024
# Files the store appends lines to, and the lock file (beside them) their writers hold: such a
# file is copied whole lines only, under that lock when there is one (store/uidlist.py,
# store/quota.py).
APPENDED_FILES = {"dovecot-uidlist": "dovecot-uidlist.mslock", "maildirsize": ""}


class BackupError(Exception):
    """The backup cannot be made (DEST unusable, data_dir missing); one line for the admin."""


@dataclass
class Plan:
    """What one snapshot copies, listed before anything is copied (the progress bar's total)."""

    folders: list[str] = field(default_factory=list)  # empty ones matter (an empty Maildir)
    databases: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.databases) + len(self.messages) + len(self.others)


@dataclass
class Outcome:
    """What a snapshot did, for the summary line and the manifest."""

    snapshot: Path
    previous: str | None
    databases: int = 0
    messages: int = 0
    linked: int = 0  # message files hard-linked (from the previous snapshot or data_dir)
    reused: int = 0  # of those, from the previous snapshot: not read at all
    copied: int = 0  # files whose bytes were copied
    copied_bytes: int = 0
    vanished: int = 0  # gone between listing and copying (expunged, delivered from the queue)


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def message_base(name: str) -> str:
    """The immutable part of a Maildir file name: everything before the ":2," info."""
    return name.split(":2,", 1)[0]


def is_message_path(rel: Path) -> bool:
    """A message file of some Maildir folder: mail/.../(cur|new)/<name>."""
    return rel.parts[0] == "mail" and len(rel.parts) >= 3 and rel.parts[-2] in ("cur", "new")


def plan_snapshot(data_dir: Path) -> Plan:
    """Every file to back up, by kind, relative to data_dir."""
    plan = Plan()
    for top, dirs, files in os.walk(data_dir):
        here = Path(top)
        rel_dir = here.relative_to(data_dir)
        plan.folders.append(str(rel_dir))
        # Maildir and queue tmp/: nothing there has been acknowledged to anybody.
        if rel_dir.name == "tmp" and rel_dir.parts[:1] in (("mail",), ("queue",)):
            dirs[:] = []
            continue
        dirs.sort()
        names = set(files)
        for name in sorted(files):
            rel = rel_dir / name
            if name.startswith(TRANSIENT_PREFIXES):
                continue
            if name.endswith(SQLITE_SIDE_FILES) and _sqlite_side(name, names):
                continue
            path = here / name
            try:
                if not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
            except FileNotFoundError:
                continue
            if is_message_path(rel):
                plan.messages.append(str(rel))
            elif is_sqlite(path):
                plan.databases.append(str(rel))
            else:
                plan.others.append(str(rel))
    return plan


def _sqlite_side(name: str, names: set[str]) -> bool:
    for suffix in SQLITE_SIDE_FILES:
        if name.endswith(suffix) and name[: -len(suffix)] in names:
            return True
    return False


def snapshot_name(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y%m%dT%H%M%S.%fZ")


def previous_snapshot(dest: Path) -> tuple[Path, dict] | None:
    """The newest complete snapshot in DEST and its manifest, if any."""
    try:
        name = (dest / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    snap = dest / name
    try:
        manifest = json.loads((snap / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT or "/" in name or name in ("", ".", ".."):
        return None
    return snap, manifest


def make_snapshot(
    data_dir: Path,
    dest: Path,
    hostname: str = "",
    progress: Callable[[int], None] | None = None,
    started: Callable[[int], None] | None = None,
) -> Outcome:
    """Back data_dir up into a new snapshot under `dest` (blocking). `started(total)` and
    `progress(n)` drive a progress bar."""
    if not (data_dir / "mail").is_dir():
        raise BackupError(f"{data_dir} holds no mailsuite data (no mail/ folder)")
    make_private_dirs(dest)
    data_dir = data_dir.resolve()
    if dest.resolve() == data_dir or data_dir in dest.resolve().parents:
        raise BackupError(f"{dest} is inside the data folder {data_dir}")
    prev = previous_snapshot(dest)
    name = snapshot_name()
    snap = dest / name
    target = snap / "data"
    make_private_dirs(target)
    outcome = Outcome(snapshot=snap, previous=prev[0].name if prev else None)
    earlier = _message_index(prev) if prev else {}
    same_fs = os.stat(data_dir).st_dev == os.stat(target).st_dev
    plan = plan_snapshot(data_dir)
    if started is not None:
        started(plan.total)
    step = progress or (lambda n: None)
    for rel in plan.folders:
        make_private_dirs(target / rel)
    messages: dict[str, int] = {}
    for rel in plan.messages:
        kept = _back_up_message(data_dir, target, rel, earlier, prev, same_fs, outcome)
        if kept is not None:
            messages[kept[0]] = kept[1]
        step(1)
    # After the messages: each folder's uidlist then names every message copied above.
    for rel in plan.others:
        _back_up_file(data_dir / rel, target / rel, outcome)
        step(1)
    for rel in plan.databases:
        _back_up_database(data_dir / rel, target / rel)
        outcome.databases += 1
        step(1)
    outcome.messages = len(messages)
    manifest = {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(),
        "hostname": hostname,
        "data_dir": str(data_dir),
        "previous": outcome.previous,
        "databases": plan.databases,
        "messages": messages,
        "files": len(plan.others),
    }
    _write_private(snap / MANIFEST, json.dumps(manifest, indent=1).encode())
    _write_private(dest / LATEST, (name + "\n").encode())
    return outcome


def _message_index(prev: tuple[Path, dict]) -> dict[tuple[str, str], str]:
    """(folder path, message base name) -> path in the previous snapshot."""
    index = {}
    for rel in prev[1].get("messages", {}):
        p = Path(rel)
        index[(str(p.parent.parent), message_base(p.name))] = rel
    return index


def _back_up_message(data_dir, target, rel, earlier, prev, same_fs, outcome):
    """One message file: linked from the previous snapshot when it has the same message, else
    linked (same filesystem) or copied from data_dir. Returns (its path in the snapshot,
    size), or None when it was expunged before we got to it."""
    p = Path(rel)
    folder, base = str(p.parent.parent), message_base(p.name)
    dst = target / rel
    make_private_dirs(dst.parent)
    known = earlier.get((folder, base))
    if known is not None:
        try:
            os.link(prev[0] / "data" / known, dst)
            outcome.linked += 1
            outcome.reused += 1
            return rel, os.stat(dst).st_size
        except FileNotFoundError:
            pass  # the previous snapshot lost it: take it from data_dir
    src = data_dir / rel
    for _ in range(3):
        try:
            if same_fs:
                os.link(src, dst)
                outcome.linked += 1
            else:
                _copy_file(src, dst, outcome, keep_mtime=True)
            return rel, os.stat(dst).st_size
        except FileNotFoundError:
            # Renamed since it was listed (a flag change, new/ -> cur/): find it again.
            src = _find_message(data_dir / folder, base)
            if src is None:
                outcome.vanished += 1
                return None
            rel = str(src.relative_to(data_dir))
            dst = target / rel
            make_private_dirs(dst.parent)
    outcome.vanished += 1
    return None


def _find_message(folder: Path, base: str) -> Path | None:
    for sub in ("cur", "new"):
        try:
            with os.scandir(folder / sub) as it:
                for entry in it:
                    if message_base(entry.name) == base:
                        return Path(entry.path)
        except FileNotFoundError:
            continue
    return None


def _back_up_file(src: Path, dst: Path, outcome: Outcome) -> None:
    make_private_dirs(dst.parent)
    try:
        if src.name in APPENDED_FILES:
            _copy_appended(src, dst, outcome)
        else:
            _copy_file(src, dst, outcome, keep_mtime=False)
    except FileNotFoundError:
        outcome.vanished += 1


def _copy_appended(src: Path, dst: Path, outcome: Outcome) -> None:
    """A file that writers append lines to: read under the writers' lock when it has one
    (dovecot-uidlist: a shared flock waits for an append in progress), and only up to its
    last whole line."""
    lock = src.parent / APPENDED_FILES[src.name] if APPENDED_FILES[src.name] else None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE) if lock else None
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        data = src.read_bytes()
    finally:
        if fd is not None:
            os.close(fd)
    data = data[: data.rfind(b"\n") + 1]
    with open(dst, "wb", opener=private_opener) as f:
        f.write(data)
    outcome.copied += 1
    outcome.copied_bytes += len(data)


def _copy_file(src: Path, dst: Path, outcome: Outcome, keep_mtime: bool) -> None:
    """Copy bytes into a new private file; a message keeps its mtime (its received date when
    an index is rebuilt). State files do not: the store must see them as changed."""
    with open(src, "rb") as fin:
        st = os.fstat(fin.fileno())
        with open(dst, "wb", opener=private_opener) as fout:
            shutil.copyfileobj(fin, fout, COPY_CHUNK)
    if keep_mtime:
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    outcome.copied += 1
    outcome.copied_bytes += st.st_size


def _back_up_database(src: Path, dst: Path) -> None:
    """SQLite's online backup: a consistent copy while the server writes (WAL included)."""
    make_private_dirs(dst.parent)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    source = sqlite3.connect(src, timeout=30)
    try:
        copy = sqlite3.connect(dst)
        try:
            source.backup(copy)
            # A file on its own: no -wal beside it to lose.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
    finally:
        source.close()


def _write_private(path: Path, data: bytes) -> None:
    """Write a small file whole: a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb", opener=private_opener) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
