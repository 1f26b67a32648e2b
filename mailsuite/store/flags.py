"""Maildir info suffixes (`:2,FRS`) and `dovecot-keywords` <-> IMAP flags.

System flags are capital letters (Maildir spec); keywords are the letters a-z, mapped to names by
the folder's `dovecot-keywords` file (`<index> <name>` per line), as Dovecot writes it, so that a
Dovecot Maildir keeps its keywords when adopted.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from twisted.python import threadable

from mailsuite.durable.modes import private_opener

SYSTEM_TO_LETTER = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "$Forwarded": "P",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
LETTER_TO_SYSTEM = {v: k for k, v in SYSTEM_TO_LETTER.items()}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
INFO_SEPARATOR = ":2,"


_SIZE_RE = re.compile(r",S=(\d+)")


def size_in_name(key: str) -> int | None:
    """The `,S=<size>` a Maildir file name carries (Maildir++), or None."""
    m = _SIZE_RE.search(key)
    return int(m.group(1)) if m else None


def split_filename(filename: str) -> tuple[str, str]:
    """(key, info letters) of a Maildir file name; the key is stable across flag changes."""
    key, sep, info = filename.partition(INFO_SEPARATOR)
    return key, info if sep else ""


def canonical_flag(flag: str) -> str:
    """System flags are case-insensitive on the wire; store them in one spelling."""
    if flag.startswith("\\"):
        for known in SYSTEM_TO_LETTER:
            if known.lower() == flag.lower():
                return known
    if flag.lower() == "$forwarded":
        return "$Forwarded"
    return flag


_FLAG_SETS_KEPT = 4096


class Keywords:
    """The letter <-> keyword table of one folder, persisted in `dovecot-keywords`."""

    def __init__(self, folder_path: Path):
        self.path = folder_path / "dovecot-keywords"
        self._lock = threading.Lock()
        self._mtime = None
        self.names: list[str | None] = [None] * 26
        # One frozenset per info string: a folder's messages then share a handful of sets,
        # which every reader that hashes or compares them (IMAP's FLAGS rendering, keyword
        # checks) tests by identity instead of element by element.
        self._flags_of: dict[str, frozenset[str]] = {}
        # A letter given on the reactor, whose file is written by the folder's queue of file
        # operations (`save_unsaved`, before the renames that use it): the reactor never
        # writes.  Meanwhile the file is not read back over it.
        self.unsaved = False
        self._load()

    def _load(self) -> None:
        if self.unsaved:
            return
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if st.st_mtime_ns == self._mtime:
            return
        names: list[str | None] = [None] * 26
        try:
            text = self.path.read_text("utf-8", "replace")
        except OSError:
            return
        for line in text.splitlines():
            idx, _, name = line.partition(" ")
            if idx.isdigit() and int(idx) < 26 and name:
                names[int(idx)] = name
        self.names = names
        self._flags_of = {}
        self._mtime = st.st_mtime_ns

    def to_flags(self, info: str) -> frozenset[str]:
        known = self._flags_of.get(info)
        if known is not None:
            return known
        flags = set()
        unnamed = False
        for ch in info:
            if ch in LETTER_TO_SYSTEM:
                flags.add(LETTER_TO_SYSTEM[ch])
            elif "a" <= ch <= "z":
                name = self.names[ord(ch) - 97]
                if name is None:
                    self._load()
                    name = self.names[ord(ch) - 97]
                if name:
                    flags.add(name)
                else:
                    unnamed = True  # asked again next time: the file may name it by then
        out = frozenset(flags)
        if not unnamed:
            if len(self._flags_of) >= _FLAG_SETS_KEPT:
                self._flags_of = {}
            self._flags_of[info] = out
        return out

    def to_info(self, flags) -> str:
        """Info letters for `flags`, allocating letters for new keywords (26 at most)."""
        letters = []
        for flag in flags:
            if flag in SYSTEM_TO_LETTER:
                letters.append(SYSTEM_TO_LETTER[flag])
            elif flag.startswith("\\"):
                continue  # \Recent and unknown system flags are not stored
            else:
                letter = self._letter(flag)
                if letter:
                    letters.append(letter)
        return "".join(sorted(set(letters)))

    def _letter(self, keyword: str) -> str | None:
        with self._lock:
            for i, name in enumerate(self.names):
                if name is not None and name.lower() == keyword.lower():
                    return KEYWORD_LETTERS[i]
            self._load()
            for i, name in enumerate(self.names):
                if name is None:
                    self.names[i] = keyword
                    self._flags_of = {}
                    if threadable.isInIOThread():
                        self.unsaved = True
                    else:
                        self._save()
                    return KEYWORD_LETTERS[i]
        return None  # more than 26 keywords: Maildir cannot hold it

    def save_unsaved(self) -> None:
        """Write the letters given on the reactor (blocking: the folder's queue runs it)."""
        with self._lock:
            if self.unsaved:
                self._save()

    def _save(self) -> None:
        lines = "".join(f"{i} {n}\n" for i, n in enumerate(self.names) if n)
        tmp = self.path.with_name(f"dovecot-keywords.tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
            f.write(lines)
        os.replace(tmp, self.path)
        self.unsaved = False
        self._mtime = self.path.stat().st_mtime_ns

    def known(self) -> list[str]:
        return [n for n in self.names if n]

    def full(self) -> bool:
        """Every letter names a keyword: no new one can be stored (IMAP then stops offering
        new keywords in PERMANENTFLAGS)."""
        return None not in self.names
