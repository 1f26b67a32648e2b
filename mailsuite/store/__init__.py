"""The mail store: one Maildir++ per user under `<data_dir>/mail/<domain>/<localpart>/`."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.durable import DurableIO
from mailsuite.store.folder import Folder, FolderEvent, Message
from mailsuite.store.maildir import (
    DEFAULT_FOLDERS,
    FolderExists,
    Mailbox,
    MailboxEvent,
    NoSuchFolder,
    make_maildir,
)
from mailsuite.store.names import BadFolderName
from mailsuite.store.quota import Quota, QuotaExceeded

log = Logger(namespace="mailsuite.store")

__all__ = [
    "BadFolderName",
    "Folder",
    "FolderEvent",
    "FolderExists",
    "Mailbox",
    "MailboxEvent",
    "Message",
    "NoSuchFolder",
    "NoSuchMailbox",
    "Quota",
    "QuotaExceeded",
    "Store",
]


def _write_images(images: list) -> list:
    """The folders whose index image could not be written (the durable pool)."""
    return [folder for folder, image in images if not folder.write_index(image)]


class NoSuchMailbox(KeyError):
    pass


def split_address(address: str) -> tuple[str, str]:
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise NoSuchMailbox(address)
    # The path components come from the account database, but never trust them to stay inside.
    if (
        local in (".", "..")
        or "/" in local
        or "\0" in local
        or "/" in domain
        or domain.startswith(".")
    ):
        raise NoSuchMailbox(address)
    return local.lower(), domain.lower()


class Store:
    def __init__(self, root: Path, io: DurableIO | None = None):
        self.root = Path(root)
        # The durable-I/O service deliveries go through (Services passes the probed one).
        self.io = io if io is not None else DurableIO()
        self._mailboxes: dict[str, Mailbox] = {}
        self._lock = threading.Lock()

    def path_for(self, address: str) -> Path:
        local, domain = split_address(address)
        return self.root / domain / local

    def mailbox(self, address: str) -> Mailbox:
        """The process-wide Mailbox of `address`; NoSuchMailbox when it has no Maildir."""
        key = address.lower()
        with self._lock:
            mbox = self._mailboxes.get(key)
        if mbox is not None:
            return mbox
        path = self.path_for(address)
        if not (path / "cur").is_dir():
            raise NoSuchMailbox(address)
        with self._lock:
            mbox = self._mailboxes.setdefault(key, Mailbox(key, path, self.io))
        return mbox

    def create_mailbox(
        self, address: str, quota_bytes: int = 0, quota_messages: int = 0
    ) -> Mailbox:
        """A new Maildir with the standard folders (Outlook makes localized ones otherwise)."""
        path = self.path_for(address)
        make_maildir(path)
        mbox = self.mailbox(address)
        for name, role in DEFAULT_FOLDERS.items():
            if not mbox.exists(name):
                mbox.create_folder(name, special_use=role)
            mbox.subscribe(name)
        mbox.subscribe("INBOX")
        mbox.set_quota(quota_bytes, quota_messages)
        return mbox

    def delete_mailbox(self, address: str) -> None:
        path = self.path_for(address)
        with self._lock:
            self._mailboxes.pop(address.lower(), None)
        if path.exists():
            shutil.rmtree(path)

    def open_mailboxes(self) -> list[Mailbox]:
        with self._lock:
            return list(self._mailboxes.values())

    def save_indexes(self) -> None:
        """Every changed index written now (blocking: shutdown, the admin command)."""
        for mbox in self.open_mailboxes():
            mbox.save_indexes()

    def persist_indexes(self, folders=None) -> defer.Deferred:
        """Reactor: the image of every changed index (of `folders`, else of every open
        folder: the server's timer) taken now and written in the durable pool; a failed
        write leaves its folder to be saved again."""
        if folders is None:
            folders = [f for mbox in self.open_mailboxes() for f in mbox.open_folders()]
        images = []
        for folder in folders:
            image = folder.index_image()
            if image is not None:
                images.append((folder, image))
        if not images:
            return defer.succeed(None)

        def unsaved(folders) -> None:
            for folder in folders:
                folder.index_unsaved()

        def failed(failure) -> None:
            log.failure("saving indexes failed", failure)
            unsaved([folder for folder, _ in images])

        d = self.io.submit(_write_images, images)
        d.addCallbacks(unsaved, failed)
        return d

    def notify_delivery(self, address: str, folder: str = "INBOX") -> None:
        """Reactor thread: after an in-process delivery, an open folder indexes what was
        delivered into it, told by the delivery (no listing; wakes IDLE); with nothing told
        (it was opened meanwhile) it is listed in the durable pool when its directories say
        so.  A folder nobody has open is named to the mailbox's watchers (IMAP NOTIFY)."""
        with self._lock:
            mbox = self._mailboxes.get(address.lower())
        if mbox is None:
            return
        for f in mbox.open_folders():
            if f.name == folder:
                if not f.take_delivered() and f.needs_listing():
                    d = f.listing_after_ops(self.io.submit)
                    d.addCallbacks(
                        f.apply_listing,
                        lambda failure: log.failure("listing {n} failed", failure, n=folder),
                    )
                return
        if mbox.watched:
            mbox.announce(MailboxEvent("messages", folder))
