"""`mailsuite export`: one user's mail out, as a Dovecot-style Maildir++ tree or one mbox per folder.

The Maildir export keeps everything a server needs to adopt it: file names with their key,
flags as info letters with `dovecot-keywords`, internal dates as mtimes, UIDs and UIDVALIDITY
in `dovecot-uidlist`, and `subscriptions`. Folder directories use `.` between levels and
modified UTF-7 names, as Dovecot writes them, so Dovecot (or `mailsuite import maildir`) reads
it back unchanged.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec)

from mailsuite.progress import Progress
from mailsuite.store import Folder, Mailbox
from mailsuite.store import uidlist as uidlist_mod
from mailsuite.store.flags import KEYWORD_LETTERS, SYSTEM_TO_LETTER
from mailsuite.transfer.mboxfile import format_message
from mailsuite.transfer.progress import TransferStats


class ExportError(Exception):
    """The destination cannot be written (exists and is not empty, not a directory...)."""


def encode_level(level: str) -> str:
    """One folder level as a directory name part: '.' and '%' escaped, then modified UTF-7."""
    level = level.replace("%", "%25").replace(".", "%2E")
    return codecs.encode(level, "imap4-utf-7").decode("ascii")


def maildir_dirname(name: str) -> str:
    return "" if name == "INBOX" else "." + ".".join(encode_level(p) for p in name.split("/"))


def _prepare(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest} exists and is not an empty directory")
    dest.mkdir(parents=True, exist_ok=True)


def _write_file(path: Path, data: bytes, mtime: float | None = None) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _info(flags, keywords: list[str]) -> str:
    letters = []
    for flag in flags:
        if flag in SYSTEM_TO_LETTER:
            letters.append(SYSTEM_TO_LETTER[flag])
        elif not flag.startswith("\\"):
            if flag not in keywords and len(keywords) < len(KEYWORD_LETTERS):
                keywords.append(flag)
            if flag in keywords:
                letters.append(KEYWORD_LETTERS[keywords.index(flag)])
    return "".join(sorted(letters))


def _export_folder_maildir(
    folder: Folder, path: Path, stats: TransferStats, progress: Progress
) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    if folder.name != "INBOX":
        (path / "maildirfolder").touch()
    keywords: list[str] = []
    entries: dict[str, int] = {}
    for msg in list(folder.messages):
        try:
            data = folder.read(msg)
        except OSError as e:
            stats.skipped.append((f"{folder.name} UID {msg.uid}", str(e)))
            progress.note(f"skipped {folder.name} UID {msg.uid}: {e}")
            progress.advance()
            continue
        name = f"{msg.key}:2,{_info(msg.flags, keywords)}"
        _write_file(path / "cur" / name, data, msg.internaldate)
        entries[msg.key] = msg.uid
        stats.copied += 1
        stats.copied_bytes += len(data)
        progress.advance()
    if keywords:
        text = "".join(f"{i} {k}\n" for i, k in enumerate(keywords))
        _write_file(path / "dovecot-keywords", text.encode("utf-8"))
    ul = uidlist_mod.Uidlist(folder.uidvalidity, folder.uidnext, entries)
    uidlist_mod.UidlistFile(path).rewrite(ul)


def _folders(mailbox: Mailbox, stats: TransferStats, progress: Progress):
    """Every folder, freshly indexed, counted and announced to the progress display."""
    for name in mailbox.list_folders():
        folder = mailbox.folder(name)
        folder.refresh(force=True)
        stats.folders.add(name)
        progress.start(name, len(folder.messages))
        yield name, folder


def export_maildir(mailbox: Mailbox, dest: Path, progress: Progress | None = None) -> TransferStats:
    progress = progress or Progress()
    stats = TransferStats()
    _prepare(dest)
    for name, folder in _folders(mailbox, stats, progress):
        _export_folder_maildir(folder, dest / maildir_dirname(name), stats, progress)
    subs = "".join(
        codecs.encode(n, "imap4-utf-7").decode("ascii").replace("/", ".") + "\n"
        for n in mailbox.subscriptions()
    )
    _write_file(dest / "subscriptions", subs.encode("ascii"))
    return stats


def mbox_filename(name: str) -> Path:
    """'Archive/2023' -> Archive/2023.mbox (levels are validated by the store: no '..')."""
    return Path(*name.split("/")).with_name(name.split("/")[-1] + ".mbox")


def export_mbox(mailbox: Mailbox, dest: Path, progress: Progress | None = None) -> TransferStats:
    progress = progress or Progress()
    stats = TransferStats()
    _prepare(dest)
    for name, folder in _folders(mailbox, stats, progress):
        out = dest / mbox_filename(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as f:
            for msg in list(folder.messages):
                try:
                    data = folder.read(msg)
                except OSError as e:
                    stats.skipped.append((f"{name} UID {msg.uid}", str(e)))
                    progress.note(f"skipped {name} UID {msg.uid}: {e}")
                    progress.advance()
                    continue
                f.write(format_message(data, msg.flags, msg.internaldate))
                stats.copied += 1
                stats.copied_bytes += len(data)
                progress.advance()
            f.flush()
            os.fsync(f.fileno())
    return stats
