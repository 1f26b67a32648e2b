"""The `mailsuite backup DEST` and `mailsuite restore SRC` subcommands.

The progress bar (`mailsuite.progress`) draws on a terminal only. Errors are one line with a sysexits code: 65 (EX_DATAERR) for SRC that is not a backup,
73 (EX_CANTCREAT) for a data folder that is not empty or a DEST that cannot be written.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mailsuite.backup.restore import DataDirNotEmpty, NotABackup, restore_snapshot
from mailsuite.backup.snapshot import BackupError, make_snapshot
from mailsuite.progress import Progress
from mailsuite.sysexits import EX_CANTCREAT, EX_DATAERR


def add_backup_commands(subparsers) -> None:
    s = subparsers.add_parser(
        "backup",
        help="copy the data folder into a new snapshot in DEST while the server runs "
        "(messages already in DEST's last snapshot are hard-linked, not copied again)",
    )
    s.add_argument(
        "dest",
        type=Path,
        metavar="DEST",
        help="the backup folder (made if missing; may hold earlier snapshots)",
    )
    s.set_defaults(func=run_backup)
    s = subparsers.add_parser(
        "restore",
        help="put a backup (DEST, or one snapshot in it) back into an empty data folder",
    )
    s.add_argument(
        "src",
        type=Path,
        metavar="SRC",
        help="a backup folder (its latest snapshot) or one snapshot in it",
    )
    s.set_defaults(func=run_restore)


def _bar(label: str):
    """(started, advance, finish) of a progress bar for `label`."""
    bar = Progress()
    return (lambda total: bar.start(label, total)), bar.advance, bar.finish


def run_backup(ctx) -> int:
    config = ctx.config
    started, advance, finish = _bar("backup")
    try:
        out = make_snapshot(
            config.data_dir, ctx.args.dest, config.hostname, progress=advance, started=started
        )
    except BackupError as e:
        print(f"mailsuite: backup: {e}", file=sys.stderr)
        return EX_DATAERR
    except PermissionError as e:
        print(f"mailsuite: backup: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EX_CANTCREAT
    since = f", {out.reused} unchanged since {out.previous}" if out.previous else ""
    finish(
        f"backup {out.snapshot}: {out.messages} messages ({out.linked} hard-linked{since}), "
        f"{out.databases} databases, {out.copied} files copied "
        f"({out.copied_bytes / 1048576:.1f} MiB)"
        + (f", {out.vanished} gone while copying" if out.vanished else "")
    )
    return 0


def run_restore(ctx) -> int:
    config = ctx.config
    started, advance, finish = _bar("restore")
    try:
        done = restore_snapshot(ctx.args.src, config.data_dir, progress=advance, started=started)
    except NotABackup as e:
        print(f"mailsuite: restore: {e}", file=sys.stderr)
        return EX_DATAERR
    except DataDirNotEmpty as e:
        print(f"mailsuite: restore: {e}", file=sys.stderr)
        return EX_CANTCREAT
    finish(
        f"restored {done.snapshot} into {config.data_dir}: {done.messages} messages, "
        f"{done.files} files ({done.linked} hard-linked, {done.copied_bytes / 1048576:.1f} MiB "
        "copied)"
    )
    return 0
