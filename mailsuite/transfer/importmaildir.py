"""`mailsuite import maildir`: a Dovecot or Courier Maildir++ tree into a user's mailbox.

Folders are the root (INBOX) and every `.A.B` directory (levels joined by `.`, names in
modified UTF-7 as Dovecot and Courier write them). Flags come from the `:2,` info letters;
keywords from the folder's `dovecot-keywords` (letters a-z) or Courier's `courierimapkeywords/`
(a `:list` of names and per-message indexes, overridden by newer per-message files); the
internal date from the file's mtime (what Dovecot reports); UIDs from `dovecot-uidlist` or
Courier's `courierimapuiddb` (the same format, version 1) when the destination folder is still
empty. Into a folder that holds mail, a message already there (same Message-ID and body) is
counted as present, not copied again.
"""

from __future__ import annotations

import codecs
import os
from dataclasses import dataclass
from pathlib import Path

import twisted.mail.imap4  # noqa: F401  (registers the "imap4-utf-7" codec)

from mailsuite.progress import Progress
from mailsuite.store import Mailbox
from mailsuite.store import uidlist as uidlist_mod
from mailsuite.store.flags import LETTER_TO_SYSTEM
from mailsuite.transfer.progress import TransferStats
from mailsuite.transfer.target import ImportTarget


@dataclass
class SourceMessage:
    path: Path
    key: str  # file name without the ":2," info: what dovecot-uidlist names
    info: str
    mtime: float


@dataclass
class SourceFolder:
    name: str  # IMAP name with "/" separators, decoded
    path: Path
    messages: list[SourceMessage]
    keywords: list[str | None]
    uidlist: uidlist_mod.Uidlist | None
    courier_keywords: dict[str, list[str]]


def decode_level(level: str) -> str:
    """One directory level: our own %2E/%25 escapes, then modified UTF-7 (RFC 3501 §5.1.3)."""
    level = level.replace("%2E", ".").replace("%2e", ".").replace("%25", "%")
    if "&" in level:
        try:
            return codecs.decode(level.encode("ascii"), "imap4-utf-7")
        except (UnicodeError, ValueError):
            return level
    return level


def folder_name(dirname: str) -> str | None:
    """IMAP name for a Maildir++ directory name ('.Archive.2023' -> 'Archive/2023')."""
    if dirname == "":
        return "INBOX"
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    levels = dirname[1:].split(".")
    if any(not p for p in levels):
        return None
    name = "/".join(decode_level(p) for p in levels)
    # Courier and some Dovecot setups keep everything under "INBOX.": our namespace is flat.
    if name.upper().startswith("INBOX/"):
        name = name[6:]
    return name


def read_keywords(path: Path) -> list[str | None]:
    names: list[str | None] = [None] * 26
    try:
        text = (path / "dovecot-keywords").read_text("utf-8", "replace")
    except OSError:
        return names
    for line in text.splitlines():
        idx, _, name = line.partition(" ")
        if idx.isdigit() and int(idx) < 26 and name:
            names[int(idx)] = name
    return names


def read_courier_keywords(path: Path) -> dict[str, list[str]]:
    """Message key -> keywords from Courier's `courierimapkeywords/` directory."""
    kwdir = path / "courierimapkeywords"
    result: dict[str, list[str]] = {}
    try:
        text = (kwdir / ":list").read_text("utf-8", "replace")
    except OSError:
        text = ""
    names, _, mapping = text.partition("\n\n")
    table = [n for n in names.split("\n") if n]
    for line in mapping.splitlines():
        key, sep, indexes = line.rpartition(":")
        if sep and key:
            result[key] = [
                table[int(i)] for i in indexes.split() if i.isdigit() and int(i) < len(table)
            ]
    # Newer sets per message: "key" wins over ".N.key", and a higher N over a lower one.
    latest: dict[str, tuple[int, str]] = {}
    try:
        entries = os.listdir(kwdir)
    except OSError:
        entries = []
    for name in entries:
        if name == ":list":
            continue
        if name.startswith("."):
            num, dot, key = name[1:].partition(".")
            if not (dot and num.isdigit() and key):
                continue
            rank = int(num)
        else:
            key, rank = name, 1 << 62
        if key not in latest or rank > latest[key][0]:
            latest[key] = (rank, name)
    for key, (_, name) in latest.items():
        try:
            lines = (kwdir / name).read_text("utf-8", "replace").splitlines()
        except OSError:
            continue
        result[key] = [ln.strip() for ln in lines if ln.strip()]
    return result


def info_to_flags(info: str, keywords: list[str | None]) -> list[str]:
    flags = []
    for ch in info:
        if ch in LETTER_TO_SYSTEM:
            flags.append(LETTER_TO_SYSTEM[ch])
        elif "a" <= ch <= "z" and keywords[ord(ch) - 97]:
            flags.append(keywords[ord(ch) - 97])
    return flags


def scan_folder(name: str, path: Path) -> SourceFolder:
    messages = []
    for sub in ("cur", "new"):
        try:
            entries = os.scandir(path / sub)
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.is_file():
                    continue
                key, sep, info = entry.name.partition(":2,")
                messages.append(
                    SourceMessage(Path(entry.path), key, info if sep else "", entry.stat().st_mtime)
                )
    ul = None
    for filename in (uidlist_mod.FILENAME, "courierimapuiddb"):
        try:
            ul = uidlist_mod.parse((path / filename).read_bytes())
            break
        except (uidlist_mod.CorruptUidlist, OSError, ValueError):
            continue
    return SourceFolder(name, path, messages, read_keywords(path), ul, read_courier_keywords(path))


def scan_tree(root: Path) -> list[SourceFolder]:
    """Every folder of a Maildir++ tree, INBOX first."""
    if not (root / "cur").is_dir():
        raise FileNotFoundError(f"{root} is not a Maildir (no cur/ directory)")
    folders = [scan_folder("INBOX", root)]
    for entry in sorted(os.listdir(root)):
        name = folder_name(entry)
        if name is None or name == "INBOX" or not (root / entry / "cur").is_dir():
            continue
        folders.append(scan_folder(name, root / entry))
    return folders


def _ordered(folder: SourceFolder) -> list[tuple[int | None, SourceMessage]]:
    """Messages with their source UID (None when unknown), in UID then arrival order."""
    uids = folder.uidlist.entries if folder.uidlist else {}
    pairs = [(uids.get(m.key), m) for m in folder.messages]
    known = sorted((p for p in pairs if p[0] is not None), key=lambda p: p[0])
    unknown = sorted((p for p in pairs if p[0] is None), key=lambda p: (p[1].mtime, p[1].key))
    return known + unknown


def _read(src: SourceFolder, items, target: ImportTarget):
    """(uid, what, data, flags, date) for each message; unreadable files reported, skipped."""
    for uid, m in items:
        what = f"{src.name}/{m.key}"
        try:
            data = m.path.read_bytes()
        except OSError as e:
            target.skip(what, f"unreadable: {e.strerror}")
            target.progress.advance()
            continue
        flags = info_to_flags(m.info, src.keywords) + src.courier_keywords.get(m.key, [])
        yield uid, what, data, flags, m.mtime


def import_maildir(root: Path, mailbox: Mailbox, progress: Progress | None = None) -> TransferStats:
    progress = progress or Progress()
    stats = TransferStats()
    target = ImportTarget(mailbox, stats, progress)
    for src in scan_tree(root):
        dest = target.ensure_folder(src.name)
        if dest is None:
            continue
        progress.start(src.name, len(src.messages))
        ordered = _ordered(src)
        keep_uids = (
            src.uidlist is not None
            and all(uid is not None for uid, _ in ordered)
            and target.folder_is_empty(dest)
        )

        if keep_uids:
            target.deliver_with_uids(
                dest, src.uidlist.uidvalidity, src.uidlist.next_uid, _read(src, ordered, target)
            )
        else:
            for _, what, data, flags, date in _read(src, ordered, target):
                if not target.already_present(dest, data):
                    target.deliver(what, data, dest, flags, date)
                progress.advance()
    return stats
