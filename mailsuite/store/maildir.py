"""A user's Maildir++: folders, durable delivery, copies, subscriptions, special-use, quota.

Delivery is the Maildir protocol made durable: write into `tmp/`, fsync the file, rename it into
`new/` (or `cur/` when it carries flags), fsync the directory.  Only then is the message
delivered.  File names carry `,S=` (size on disk) and `,W=` (size with CRLF line ends) so that
listing a folder needs neither a stat nor a read.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.durable import DurableIO
from mailsuite.durable.modes import DIR_MODE, make_private_dirs, private_opener
from mailsuite.store import names, tree
from mailsuite.store.flags import INFO_SEPARATOR, Keywords, size_in_name, split_filename
from mailsuite.store.folder import Folder, FolderEvent
from mailsuite.store.message import to_lf, wire_size
from mailsuite.store.quota import MaildirSize, Quota, QuotaExceeded

log = Logger(namespace="mailsuite.store")

DEFAULT_FOLDERS = {
    "Sent": "\\Sent",
    "Drafts": "\\Drafts",
    "Trash": "\\Trash",
    "Junk": "\\Junk",
    "Archive": "\\Archive",
}
SPECIAL_USE_FILE = tree.SPECIAL_USE_FILE
SUBSCRIPTIONS_FILE = tree.SUBSCRIPTIONS_FILE

_counter = itertools.count(1)
_host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


class NoSuchFolder(KeyError):
    pass


class FolderExists(ValueError):
    pass


@dataclass(frozen=True)
class MailboxEvent:
    """A change anywhere in one user's Maildir, for whoever watches the whole tree (IMAP
    NOTIFY): kind "created", "deleted", "renamed" (`old_name` set), "subscribed",
    "unsubscribed", or "messages" (`folder_event` is the open folder's event, or None when a
    delivery went into a folder nobody has open)."""

    kind: str
    name: str
    old_name: str | None = None
    folder_event: FolderEvent | None = None


# The process id, read once (os.getpid is a system call, one per delivery) and again in a
# forked child.
_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def unique_name() -> str:
    """Maildir unique name: time, microseconds, pid and a per-process counter, host."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{_pid}Q{next(_counter)}.{_host}"


def _link_following_renames(src: Folder, msg, tmp: Path):
    """Hard-link a message's file to `tmp`: True when linked, False when copied (the
    filesystem cannot link: fsync it), None when the message is gone.

    A flag change renames the file in the durable pool after the index has its new name:
    `Folder.follow` tries the names a queued rename has yet to move it from.  A vanished name
    is looked up again a few times before the message is taken as expunged (a MOVE must never
    skip a message that only changed its flags)."""
    place = functools.partial(os.link, dst=tmp)
    for attempt in range(5):
        try:
            src.follow(msg, place)
            return place.func is os.link
        except FileNotFoundError:
            if src.by_uid(msg.uid) is not msg:
                return None
            time.sleep(0.001 * (attempt + 1))
        except OSError:
            if place.func is not os.link:
                raise
            place = functools.partial(shutil.copyfile, dst=tmp)
    return None


def make_maildir(path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        make_private_dirs(path / sub)


_PIECE = 1 << 20


def _copy_to_lf(src, path: str, quota: MaildirSize | None) -> tuple[int, int]:
    """Copy a binary file into a new file at `path` with CRLF turned into LF, in pieces, not yet
    fsynced.  Returns (its open descriptor, size on disk, size with CRLF line ends).  A CR at the end of one piece is held
    back until the next shows whether an LF follows."""
    size = lf_count = 0
    carry = b""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            piece = src.read(_PIECE)
            chunk = carry + piece
            if piece and chunk.endswith(b"\r"):
                chunk, carry = chunk[:-1], b"\r"
            else:
                carry = b""
            out = to_lf(chunk)
            if quota is not None:
                quota.check(size + len(out))
            view = memoryview(out)
            while view:
                view = view[os.write(fd, view) :]
            size += len(out)
            lf_count += out.count(b"\n") - out.count(b"\r\n")
            if not piece:
                break
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, size, size + lf_count


# Folder names whose directory a Mailbox remembers (Mailbox._dir), at most.
_DIRS_REMEMBERED = 256


class Mailbox:
    """One user's Maildir++ tree."""

    def __init__(self, address: str, path: Path, io: DurableIO):
        self.address = address
        self.path = path
        self.io = io
        self._folders: dict[str, Folder] = {}
        self._lock = threading.Lock()
        self._quota = MaildirSize(path, self._scan_usage)
        self._keywords: dict[str, Keywords] = {}
        self._listeners: list = []
        # {name as asked: (its valid name, its directory)}: what a delivery into a folder
        # other than INBOX (Junk, by the junk filter) works out from the name each time
        self._dirs: dict[str, tuple[str, str]] = {}
        # The subscription and special-use files are read, changed and written back as a
        # whole, by workers of the durable pool at once: one change at a time.
        self._lists_lock = threading.Lock()
        self._tree: tree.FolderTree | None = None  # the last snapshot read (folder_tree)

    # -- watchers of the whole tree ------------------------------------------------------------

    def add_listener(self, callback) -> None:
        """`callback(MailboxEvent)` for every change made through this process.  It runs in
        the thread that made the change (a Sieve `fileinto :create` runs in a worker)."""
        self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    @property
    def watched(self) -> bool:
        return bool(self._listeners)

    def announce(self, event: MailboxEvent) -> None:
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:
                log.failure("mailbox listener failed")

    def _folder_event(self, folder: Folder, event: FolderEvent) -> None:
        # A Folder left behind by a RENAME or DELETE speaks no more for its old name.
        if self._listeners and self._folders.get(folder.name) is folder:
            self.announce(MailboxEvent("messages", folder.name, folder_event=event))

    # -- folders -----------------------------------------------------------------------------

    def folder_path(self, name: str) -> Path:
        return self.path / names.to_dirname(name) if name != names.INBOX else self.path

    def list_folders(self) -> list[str]:
        return tree.list_folder_names(os.fspath(self.path))

    def folder_tree(self) -> tree.FolderTree:
        """The folder names, subscriptions and special-use roles read from disk (blocking:
        the durable pool), kept for `known_tree`."""
        snapshot = tree.read_tree(os.fspath(self.path))
        self._tree = snapshot
        return snapshot

    def known_tree(self) -> tree.FolderTree | None:
        """The last `folder_tree` snapshot when nothing changed since it was read (three
        stats, for the reactor); None when it must be read again."""
        snapshot = self._tree
        if snapshot is None or not tree.trusted(snapshot.stamp):
            return None
        if tree.tree_stamp(os.fspath(self.path)) != snapshot.stamp:
            return None
        return snapshot

    def _dir(self, name: str) -> tuple[str, str]:
        """(the valid name, its directory as a string) for a folder name (BadFolderName when
        it is not valid); remembered for a few hundred names."""
        known = self._dirs.get(name)
        if known is None:
            valid = names.validate(name)
            known = (valid, os.fspath(self.folder_path(valid)))
            if len(self._dirs) >= _DIRS_REMEMBERED:
                self._dirs.clear()
            self._dirs[name] = known
        return known

    def _release_held(self, name: str) -> None:
        """Let go of the descriptors deliveries held on the folder's new/ and cur/ (it was
        renamed, and they followed it, or removed): the next delivery to `name` opens what is
        there then."""
        base = os.fspath(self.folder_path(name))
        for sub in ("/new", "/cur"):
            self.io.commit.release(base + sub)

    def exists(self, name: str) -> bool:
        if name == names.INBOX:
            return True  # every delivery asks: valid, and always there
        name, base = self._dir(name)
        return name == names.INBOX or os.path.isdir(base + "/cur")

    def folder(self, name: str) -> Folder:
        """The process-wide shared Folder object for `name`."""
        name = names.validate(name)
        with self._lock:
            folder = self._folders.get(name)
            if folder is not None:
                return folder
        if not self.exists(name):
            raise NoSuchFolder(name)
        with self._lock:
            folder = self._folders.get(name)
            if folder is None:
                kw = self._keywords.get(name) or Keywords(self.folder_path(name))
                self._keywords[name] = kw
                folder = Folder(name, self.folder_path(name), kw, self.io)
                folder.add_listener(functools.partial(self._folder_event, folder))
                self._folders[name] = folder
            return folder

    def is_loaded(self, name: str) -> bool:
        """Whether the Folder for `name` is in memory already (`folder` returns it at once).
        Without the lock: a folder being loaded under it counts as not loaded yet."""
        return names.validate(name) in self._folders

    def open_folders(self) -> list[Folder]:
        with self._lock:
            return list(self._folders.values())

    def create_folder(self, name: str, special_use: str | None = None) -> None:
        """Blocking (the durable pool, or the admin command's thread).  Of two made at once
        under one name, one gets FolderExists: its directory is made by one mkdir."""
        name = names.validate(name)
        if self.exists(name):
            raise FolderExists(name)
        path = self.folder_path(name)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:
            if os.path.isdir(path / "cur"):
                raise FolderExists(name) from None
            # a directory without cur/ is no folder (half made): finish it
        make_maildir(path)
        (path / "maildirfolder").touch(mode=0o600)
        if special_use:
            self.set_special_use(name, special_use)
        self.announce(MailboxEvent("created", name))

    def delete_folder(self, name: str) -> Folder | None:
        """Remove the folder and its messages; blocking (the durable pool).  Returns the
        shared Folder it had in memory, now detached, whose sessions the caller tells on the
        reactor (`Folder.removed`), or None."""
        name = names.validate(name)
        if name == names.INBOX:
            raise names.BadFolderName("INBOX cannot be deleted")
        if not self.exists(name):
            raise NoSuchFolder(name)
        with self._lock:
            folder = self._folders.pop(name, None)
            self._keywords.pop(name, None)  # a folder made again under the name starts afresh
        self._quota.add(*self._negative_usage(self.folder_path(name)))
        shutil.rmtree(self.folder_path(name))
        self._release_held(name)
        self._drop_special_use(name)
        self.announce(MailboxEvent("deleted", name))
        return folder

    def rename_folder(self, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: children move along; renaming INBOX moves its messages."""
        old, new = names.validate(old), names.validate(new)
        if not self.exists(old):
            raise NoSuchFolder(old)
        if self.exists(new):
            raise FolderExists(new)
        if old == names.INBOX:
            self._rename_inbox(new)
            return
        prefix = old + names.SEPARATOR
        moves = [
            (n, new + n[len(old) :])
            for n in self.list_folders()
            if n == old or n.startswith(prefix)
        ]
        for src, dst in moves:
            dst_path = self.folder_path(dst)
            make_private_dirs(dst_path.parent)
            self._settle_files(src)
            os.rename(self.folder_path(src), dst_path)
            self._release_held(src)
            with self._lock:
                self._folders.pop(src, None)
                self._keywords.pop(src, None)  # it names the old path
        with self._lists_lock:
            uses = self.special_use()
            moved = {src: dst for src, dst in moves if src in uses}
            if moved:
                for src, dst in moved.items():
                    uses[dst] = uses.pop(src)
                self._write_special_use(uses)
        for src, dst in moves:
            self.announce(MailboxEvent("renamed", dst, old_name=src))

    def _settle_files(self, name: str) -> None:
        """The flag renames and unlinks still queued on an open folder, done now (blocking):
        the folder is about to move, and their paths with it."""
        open_folder = self._folders.get(name)
        if open_folder is not None:
            open_folder.run_file_ops()

    def _rename_inbox(self, new: str) -> None:
        self._settle_files(names.INBOX)
        self.create_folder(new)
        dst = self.folder_path(new)
        for sub in ("new", "cur"):
            for filename in os.listdir(self.path / sub):
                os.rename(self.path / sub / filename, dst / sub / filename)
        with self._lock:
            self._folders.pop(names.INBOX, None)
            self._folders.pop(new, None)
        # INBOX keeps its uidlist: the same UIDVALIDITY with UIDs that go on from the old next
        # UID, so a client's cached UIDs never name a different message (RFC 3501 §2.3.1.1).
        # The moved messages' lines are dropped by the next compaction.
        (self.path / "mailsuite-index").unlink(missing_ok=True)

    # -- special-use and subscriptions -------------------------------------------------------

    def special_use(self) -> dict[str, str]:
        return tree.read_special_use(os.fspath(self.path))

    def set_special_use(self, name: str, role: str) -> None:
        with self._lists_lock:
            uses = self.special_use()
            uses[name] = role
            self._write_special_use(uses)

    def _drop_special_use(self, name: str) -> None:
        with self._lists_lock:
            uses = self.special_use()
            if uses.pop(name, None) is not None:
                self._write_special_use(uses)

    def _write_special_use(self, uses: dict[str, str]) -> None:
        self._write_lines(SPECIAL_USE_FILE, [f"{n}\t{r}" for n, r in sorted(uses.items())])

    def subscriptions(self) -> list[str]:
        return tree.read_subscriptions(os.fspath(self.path))

    def subscribe(self, name: str) -> None:
        """Blocking (the durable pool, or the admin command's thread)."""
        name = names.validate(name)
        with self._lists_lock:
            subs = self.subscriptions()
            if name in subs:
                return
            self._write_subscriptions(subs + [name])
        self.announce(MailboxEvent("subscribed", name))

    def unsubscribe(self, name: str) -> None:
        """Blocking (the durable pool, or the admin command's thread)."""
        with self._lists_lock:
            subs = self.subscriptions()
            if name not in subs:
                return
            subs.remove(name)
            self._write_subscriptions(subs)
        self.announce(MailboxEvent("unsubscribed", name))

    def move_subscriptions(self, old: str, new: str) -> None:
        """After a RENAME: the subscriptions of `old` and of the names below it name `new`
        and the names below it instead; blocking, one rewrite of the file."""
        prefix = old + names.SEPARATOR
        added = []
        with self._lists_lock:
            subs = self.subscriptions()
            moved = [s for s in subs if s == old or s.startswith(prefix)]
            if not moved:
                return
            kept = [s for s in subs if s not in moved]
            for src in moved:
                try:
                    dst = names.validate(new + src[len(old) :])
                except names.BadFolderName:
                    dst = None
                fresh = dst is not None and dst not in kept
                if fresh:
                    kept.append(dst)
                added.append((src, dst if fresh else None))
            self._write_subscriptions(kept)
        for src, dst in added:
            self.announce(MailboxEvent("unsubscribed", src))
            if dst is not None:
                self.announce(MailboxEvent("subscribed", dst))

    def _write_subscriptions(self, subs: list[str]) -> None:
        """Written as Dovecot 2.3 writes it (version 2), so Dovecot can take the Maildir back."""
        self._write_lines(
            SUBSCRIPTIONS_FILE, ["V\t2", ""] + [n.replace(names.SEPARATOR, "\t") for n in subs]
        )

    def _write_lines(self, filename: str, lines: list[str]) -> None:
        tmp = self.path / f"{filename}.tmp{os.getpid()}.{threading.get_ident()}"
        with open(tmp, "w", encoding="utf-8", opener=private_opener) as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, self.path / filename)

    # -- quota -------------------------------------------------------------------------------

    def quota(self) -> Quota:
        return self._quota.get()

    def set_quota(self, limit_bytes: int, limit_messages: int) -> None:
        self._quota.set_limits(limit_bytes, limit_messages)

    def check_quota(self, size: int) -> None:
        self._quota.check(size)

    def _scan_usage(self) -> tuple[int, int]:
        total_b = total_c = 0
        for name in self.list_folders():
            b, c = self._negative_usage(self.folder_path(name))
            total_b -= b
            total_c -= c
        return total_b, total_c

    @staticmethod
    def _negative_usage(path: Path) -> tuple[int, int]:
        b = c = 0
        for sub in ("new", "cur"):
            try:
                entries = os.listdir(path / sub)
            except FileNotFoundError:
                continue
            for filename in entries:
                key, _ = split_filename(filename)
                size = size_in_name(key)
                if size is None:
                    try:
                        size = os.stat(path / sub / filename).st_size
                    except OSError:
                        continue
                b += size
                c += 1
        return -b, -c

    # -- delivery ----------------------------------------------------------------------------

    def keywords_for(self, name: str) -> Keywords:
        with self._lock:
            kw = self._keywords.get(name)
            if kw is None:
                kw = self._keywords[name] = Keywords(self.folder_path(name))
            return kw

    def deliver(
        self,
        data,
        folder: str = names.INBOX,
        flags=(),
        internaldate: float | None = None,
        check_quota: bool = True,
    ) -> str:
        """Durably store one message; blocking (imports and the admin command call it in their
        own thread, deliver_async in the durable pool).  Returns its key.

        `data` is bytes, or a binary file positioned at the message (a large IMAP APPEND
        spooled to disk), which is copied in pieces so memory stays flat."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            return self._deliver_file(data, folder, flags, internaldate, check_quota)
        # A message in memory (every SMTP delivery, flagged or filed by Sieve or not), in as
        # few system calls as it takes (in the durable pool each is a wait for the GIL): the
        # folder is looked at only when something fails, the keywords' letters come from
        # memory, and the message is counted in maildirsize before it is written
        # (MaildirSize.charge), taken back if the write fails.
        if folder != names.INBOX:  # INBOX, most deliveries' folder, is valid as it is
            folder, base = self._dir(folder)
        else:
            base = os.fspath(self.path)
        try:
            info = self.keywords_for(folder).to_info(flags) if flags else ""
        except OSError:
            self._no_such_folder(folder)  # a new keyword's file cannot be written there
            raise
        body, key = self._stage(data, False)
        size = len(body)
        try:
            self._quota.charge(size, check_quota)
        except (OSError, QuotaExceeded):
            self._no_such_folder(folder)  # NoSuchFolder first, as if it was checked first
            raise
        try:
            # Maildir: a message with flags goes straight to cur/ with its info suffix.
            dest = f"{base}/cur/{key}{INFO_SEPARATOR}{info}" if info else f"{base}/new/{key}"
            # Not durable until that folder is fsynced: on failure no copy is kept, since the
            # sender is told to retry.  Renamed through a descriptor of new/ (or cur/) held
            # across deliveries, for any folder (INBOX, and Junk for the junk filter): an
            # open and a close fewer for each fsync (DurableIO.place); rename_folder lets go
            # of the renamed folders' descriptors.
            self.io.write_file(f"{base}/tmp/{key}", body, dest, internaldate, held=True)
        except BaseException as e:
            self._quota.add(-size, -1)
            if isinstance(e, OSError):
                self._no_such_folder(folder)
            raise
        self._record_delivery(folder, key, info, dest)
        return key

    def _record_delivery(self, folder: str, key: str, info: str, dest: str) -> None:
        """A folder open in this process learns of the message here, in the delivering
        thread (its UID assigned), so the reactor indexes it without listing the folder.
        Delivered is delivered: a failure here only leaves it to the next listing."""
        open_folder = self._folders.get(folder)
        if open_folder is None:
            return
        try:
            open_folder.delivered(key, "cur" if info else "new", info, dest)
        except Exception:
            log.failure("recording a delivery into {folder} failed", folder=folder)

    def _deliver_file(self, data, folder, flags, internaldate, check_quota) -> str:
        """deliver() of a message in a file: copied in pieces, counted once its size is known."""
        folder, base = self._folder_dir(folder)
        info = self.keywords_for(folder).to_info(flags) if flags else ""
        tmp = f"{base}/tmp/{unique_name()}.part"
        fd, size, wire = _copy_to_lf(data, tmp, self._quota if check_quota else None)
        key = f"{os.path.basename(tmp)[: -len('.part')]},S={size},W={wire}"
        if info:
            dest = f"{base}/cur/{key}{INFO_SEPARATOR}{info}"
        else:
            dest = f"{base}/new/{key}"
        self.io.sync_new_file(tmp, fd, dest, internaldate)
        self._quota.add(size, 1)
        self._record_delivery(folder, key, info, dest)
        return key

    def deliver_async(
        self, data, folder: str = names.INBOX, flags=(), internaldate: float | None = None
    ) -> defer.Deferred:
        """deliver() run in the durable pool, for the reactor thread: Deferred[key]."""
        return self.io.submit(self.deliver, data, folder, flags, internaldate)

    def _no_such_folder(self, folder: str) -> None:
        """NoSuchFolder when `folder` does not exist (after a failed delivery into it: the
        letters its keywords were given in memory are dropped with it)."""
        try:
            self._folder_dir(folder)
        except NoSuchFolder:
            with self._lock:
                if folder not in self._folders:
                    self._keywords.pop(folder, None)
            raise

    def _folder_dir(self, folder: str) -> tuple[str, str]:
        """(the validated folder name, its directory); NoSuchFolder when it does not exist."""
        # Plain strings: pathlib's joins were a fifth of the CPU a delivery costs.
        folder, base = self._dir(folder)
        if not os.path.isdir(base + "/cur"):
            raise NoSuchFolder(folder)
        return folder, base

    def _stage(self, data: bytes, check_quota: bool) -> tuple[bytes, str]:
        """The stored form (LF line ends) of a message and its new Maildir key."""
        body = to_lf(bytes(data))
        if check_quota:
            self._quota.check(len(body))
        return body, f"{unique_name()},S={len(body)},W={wire_size(body)}"

    def withdraw(self, folder: str, key: str) -> None:
        """Take back a just-delivered, not yet announced message (a multi-copy delivery that
        failed half-way must leave nothing the sender's retry would duplicate)."""
        path = self.folder_path(folder) / "new" / key
        open_folder = self._folders.get(folder)
        if open_folder is not None:
            open_folder.withdrawn(key)
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            return
        self._quota.add(-size, -1)

    def copy_files(self, src: Folder, msgs, dest_name: str) -> list[tuple]:
        """Durable copies (hard links when possible) into another folder; blocking.
        Returns (source uid, (new key, info, size, wire size, internal date)) pairs; flags and
        internal dates are kept."""
        dest_path = self.folder_path(names.validate(dest_name))
        if not (dest_path / "cur").is_dir():
            raise NoSuchFolder(dest_name)
        # Loaded here, before the copies exist, when it is not yet: its index is built in this
        # thread, and the copies are then indexed from what is known of them (index_copies).
        dest = self.folder(dest_name)
        dest_kw = self.keywords_for(dest_name)
        total = sum(m.size for m in msgs)
        self._quota.check(total)
        result = []
        for msg in msgs:
            key = f"{unique_name()},S={msg.size},W={msg.wire_size}"
            info = dest_kw.to_info(msg.flags - {"\\Recent"})
            tmp = dest_path / "tmp" / key
            linked = _link_following_renames(src, msg, tmp)
            if linked is None:
                continue  # expunged meanwhile
            if not linked:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                # RFC 3501 §6.4.7: the copy keeps the internal date (a link keeps it anyway).
                os.utime(tmp, (msg.internaldate, msg.internaldate))
            os.rename(tmp, dest_path / "cur" / (key + INFO_SEPARATOR + info))
            result.append((msg.uid, (key, info, msg.size, msg.wire_size, msg.internaldate)))
        self.io.fsync_dir(dest_path / "cur")
        self._quota.add(total, len(result))
        if result:
            try:
                dest.copied([copy for _, copy in result])  # their UIDs, here, not on the reactor
            except Exception:
                log.failure("assigning UIDs to copies in {folder} failed", folder=dest_name)
        return result

    # -- asynchronous conveniences for the protocols (reactor thread) --------------------------

    def append(self, data: bytes, folder: str = names.INBOX, flags=(), internaldate=None):
        """Deliver in the durable pool, then index: Deferred firing with (Folder, uid).  A
        folder not in memory yet is loaded in the pool too, after the delivery (its first
        listing then holds the message): an APPEND to a big Sent folder never lists it on
        the reactor."""

        def deliver_and_load():
            key = self.deliver(data, folder, flags, internaldate)
            f = self.folder(folder)
            info = f.keywords.to_info(flags) if flags else ""
            sub, name = ("cur", key + INFO_SEPARATOR + info) if info else ("new", key)
            f.record_if_missed(key, sub, info, f"{f.path}/{sub}/{name}")
            return f, key

        def indexed(result):
            f, key = result
            return f, f.index_delivered(key)

        return self.io.submit(deliver_and_load).addCallback(indexed)

    def copy(self, src: Folder, msgs, dest_name: str):
        """Copy in the durable pool, then index: Deferred firing with (dest Folder, [(src, dst)])."""

        def indexed(pairs):
            dest = self.folder(dest_name)
            uids = dest.index_copies([copy for _, copy in pairs])
            return dest, [(s, uids[copy[0]]) for s, copy in pairs if copy[0] in uids]

        d = self.io.submit(self.copy_files, src, list(msgs), dest_name)
        d.addCallback(indexed)
        return d

    def expunge(self, folder: Folder, msgs, source=None) -> list[int]:
        return folder.expunge(msgs, source=source, quota=self._quota)

    def save_indexes(self) -> None:
        for f in self.open_folders():
            f.save_index()
