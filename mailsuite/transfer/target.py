"""The one place imports write into the store: folders made on demand, Mailbox.deliver for
every message, a bad message reported and skipped, and source UIDs kept when possible.

Keeping UIDs: when a folder is empty in the store, the source's UIDVALIDITY is adopted and each
delivered key is entered into `dovecot-uidlist` with its source UID, under the uidlist lock,
before the store's index ever assigns one (the store reads the uidlist as the truth).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from mailsuite.store import BadFolderName, FolderExists, Mailbox, NoSuchFolder, QuotaExceeded
from mailsuite.store import uidlist as uidlist_mod
from mailsuite.store.names import validate as validate_folder
from mailsuite.transfer.progress import Progress, TransferStats


class ImportTarget:
    """One user's mailbox as the destination of an import."""

    def __init__(self, mailbox: Mailbox, stats: TransferStats, progress: Progress):
        self.mailbox = mailbox
        self.stats = stats
        self.progress = progress

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

    def skip(self, what: str, why: str) -> None:
        self.stats.skipped.append((what, why))
        self.progress.note(f"skipped {what}: {why}")

    def deliver(
        self,
        what: str,
        data: bytes,
        folder: str,
        flags: Iterable[str] = (),
        internaldate: float | None = None,
    ) -> str | None:
        """Store one message; its key, or None when it was skipped (reported)."""
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

    def deliver_with_uids(
        self,
        folder: str,
        uidvalidity: int,
        next_uid: int,
        messages: Iterable[tuple[int, str, bytes, list[str], float | None]],
    ) -> int:
        """Deliver (uid, what, data, flags, date) in UID order keeping the UIDs; the folder must
        be empty. Returns how many were stored. The uidlist lock is held per message only."""
        uf = uidlist_mod.UidlistFile(self.mailbox.folder_path(folder))
        with uf.locked():
            # N starts low so a message delivered meanwhile by the server gets a UID above ours
            # only once ours are in; the source's next UID is set at the end.
            ul = uidlist_mod.Uidlist(uidvalidity, 1)
            uf.rewrite(ul)
        stored = 0
        for uid, what, data, flags, date in messages:
            with uf.locked():
                ul = uf.catch_up(ul)
                key = self.deliver(what, data, folder, flags, date)
                # The uidlist must stay ascending: if someone else took a higher UID meanwhile,
                # the message is kept and the store numbers it.
                if key is not None and uid > max(ul.entries.values(), default=0):
                    ul.entries[key] = uid
                    ul.next_uid = max(ul.next_uid, uid + 1)
                    uf.append(ul, [(uid, key)])
            if key is not None:
                stored += 1
            self.progress.advance()
        with uf.locked():
            ul = uf.catch_up(ul)
            ul.next_uid = max(ul.next_uid, next_uid)
            uf.rewrite(ul)
        return stored
