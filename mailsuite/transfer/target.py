"""The one place imports write into the store: folders made on demand, Mailbox.deliver for
every message, a bad message reported and skipped, and source UIDs kept when possible.

UIDs: each delivered key is entered into `dovecot-uidlist` under the uidlist lock, before the
store's index sees the file (the store reads the uidlist as the truth), so imported mail is
numbered in source order. When a folder is empty in the store, the source's UIDVALIDITY and
UIDs are kept as they were (a Dovecot uidlist, or our own export).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

from mailsuite.progress import Progress
from mailsuite.store import BadFolderName, FolderExists, Mailbox, NoSuchFolder, QuotaExceeded
from mailsuite.store import uidlist as uidlist_mod
from mailsuite.store.names import validate as validate_folder
from mailsuite.transfer.fingerprint import Fingerprint, fingerprint, folder_fingerprints
from mailsuite.transfer.progress import TransferStats


class ImportTarget:
    """One user's mailbox as the destination of an import."""

    def __init__(self, mailbox: Mailbox, stats: TransferStats, progress: Progress):
        self.mailbox = mailbox
        self.stats = stats
        self.progress = progress
        self._uidlists: dict[str, tuple[uidlist_mod.UidlistFile, uidlist_mod.Uidlist]] = {}
        self._present: dict[str, Counter[Fingerprint]] = {}

    def ensure_folder(self, name: str) -> str | None:
        """The validated folder name, created if missing; None (reported) if it cannot be."""
        try:
            name = validate_folder(name)
            if not self.mailbox.exists(name):
                try:
                    self.mailbox.create_folder(name)
                except FolderExists:
                    pass
                self.mailbox.subscribe(name)
        except (BadFolderName, OSError) as e:
            self.skip(f"folder {name!r}", f"cannot create folder: {e}")
            return None
        self.stats.folders.add(name)
        return name

    def already_present(self, folder: str, data: bytes) -> bool:
        """Whether `folder` held this message (Message-ID and body) before the run; counted,
        so each copy there answers for one copy in the source. Counts it in stats.present."""
        present = self._present.get(folder)
        if present is None:
            present = self._present[folder] = folder_fingerprints(self.mailbox, folder)
        if not present:
            return False
        fp = fingerprint(data)
        if present[fp] <= 0:
            return False
        present[fp] -= 1
        self.stats.present += 1
        return True

    def skip(self, what: str, why: str) -> None:
        self.stats.skipped.append((what, why))
        self.progress.note(f"skipped {what}: {why}")

    def _store(
        self,
        what: str,
        data: bytes,
        folder: str,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> str | None:
        """Mailbox.deliver with failures reported; the key, or None when skipped."""
        if not data.strip():
            self.skip(what, "empty message")
            return None
        flags = [f for f in flags if f.lower() != "\\recent"]
        try:
            key = self.mailbox.deliver(data, folder, flags, internaldate)
        except QuotaExceeded:
            self.skip(what, "over quota")
            return None
        except (NoSuchFolder, OSError, ValueError) as e:
            self.skip(what, f"{type(e).__name__}: {e}")
            return None
        self.stats.copied += 1
        self.stats.copied_bytes += len(data)
        return key

    def folder_is_empty(self, folder: str) -> bool:
        path = self.mailbox.folder_path(folder)
        for sub in ("new", "cur"):
            try:
                if any(not n.startswith(".") for n in os.listdir(path / sub)):
                    return False
            except FileNotFoundError:
                pass
        ul = uidlist_mod.UidlistFile(path).load()
        return ul is None or not ul.entries

    def _uidlist(self, folder: str) -> tuple[uidlist_mod.UidlistFile, uidlist_mod.Uidlist]:
        """The folder's uidlist, cached and brought up to date (call with its lock held)."""
        cached = self._uidlists.get(folder)
        if cached is None:
            uf = uidlist_mod.UidlistFile(self.mailbox.folder_path(folder))
            try:
                ul = uf.load()
            except uidlist_mod.CorruptUidlist:
                ul = None
            if ul is None:
                ul = uidlist_mod.Uidlist(uidlist_mod.new_uidvalidity(), 1)
                uf.rewrite(ul)
            cached = self._uidlists[folder] = (uf, ul)
        uf, ul = cached
        ul = uf.catch_up(ul)
        self._uidlists[folder] = (uf, ul)
        return uf, ul

    def deliver(
        self,
        what: str,
        data: bytes,
        folder: str,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
        uid: int | None = None,
    ) -> str | None:
        """Store one message and give it a UID at once: `uid` when it keeps the list
        ascending, else the next one. The key, or None when it was skipped (reported).

        Numbering here rather than leaving it to the store's next scan keeps the source order
        (the store orders unseen files by their names, not by when they were written)."""
        cached = self._uidlists.get(folder)
        uf = cached[0] if cached else uidlist_mod.UidlistFile(self.mailbox.folder_path(folder))
        with uf.locked():
            uf, ul = self._uidlist(folder)
            key = self._store(what, data, folder, flags, internaldate)
            if key is None:
                return None
            last = max(ul.entries.values(), default=0)
            # dovecot-uidlist lines must stay ascending (someone may have numbered a message).
            if uid is None or uid <= last:
                uid = max(ul.next_uid, last + 1)
            ul.entries[key] = uid
            ul.next_uid = max(ul.next_uid, uid + 1)
            uf.append(ul, [(uid, key)])
        return key

    def deliver_with_uids(
        self,
        folder: str,
        uidvalidity: int,
        next_uid: int,
        messages: Iterable[tuple[int, str, bytes, list[str], float | None]],
    ) -> int:
        """Deliver (uid, what, data, flags, date) in UID order keeping the UIDs and the
        UIDVALIDITY; the folder must be empty. Returns how many were stored."""
        uf = uidlist_mod.UidlistFile(self.mailbox.folder_path(folder))
        with uf.locked():
            # N starts low so a message delivered meanwhile by the server gets a UID above ours
            # only once ours are in; the source's next UID is set at the end.
            ul = uidlist_mod.Uidlist(uidvalidity, 1)
            uf.rewrite(ul)
            self._uidlists[folder] = (uf, ul)
        stored = 0
        for uid, what, data, flags, date in messages:
            if self.deliver(what, data, folder, flags, date, uid) is not None:
                stored += 1
            self.progress.advance()
        with uf.locked():
            uf, ul = self._uidlist(folder)
            ul.next_uid = max(ul.next_uid, next_uid)
            uf.rewrite(ul)
        return stored
