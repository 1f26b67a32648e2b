"""One Maildir folder's index: UIDs, flags, sizes, internal dates and modseqs, held once in memory.

Every session of the process shares the one `Folder` object of a folder, so a flag change or an
expunge made by one session is seen by the others through listeners.  The index is persisted in
`mailsuite-index` so that a cold open reads one file, and it is checked against the `new/` and
`cur/` directory mtimes so that changes made by other programs are picked up on the next access.
The index is changed on one thread only (the reactor's).  Other threads (the durable pool) do
the disk work: `listing_job`'s listing (new files' UIDs assigned there, under the uidlist's
lock), `delivered` (a message this process has just delivered, its UID assigned), `write_index`
of an image taken on the reactor; the reactor applies what they found (`apply_listing`,
`take_delivered`).
"""

from __future__ import annotations

import collections
import functools
import gc
import marshal
import operator
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from twisted.logger import Logger
from twisted.python import threadable

from mailsuite.durable.modes import private_opener
from mailsuite.store import uidlist as uidlist_mod
from mailsuite.store.file_ops import Batch, FileOps, follow
from mailsuite.store.flags import INFO_SEPARATOR, Keywords, size_in_name, split_filename
from mailsuite.store.message import wire_size
from mailsuite.store.parsed_cache import ParsedCache

log = Logger(namespace="mailsuite.store")

INDEX_NAME = "mailsuite-index"
INDEX_VERSION = 3
# ext4 directory mtimes tick coarsely: a directory changed this recently may change again
# within the same tick, so its mtime cannot prove "nothing changed" yet.
MTIME_SLACK_NS = 2_000_000_000
_WIRE_RE = re.compile(r",W=(\d+)")
_READ_PIECE = 1024 * 1024
_USEC_RE = re.compile(r"M(\d+)")


class Message:
    """One message of a folder as the index knows it; no file access needed."""

    __slots__ = (
        "uid",
        "key",
        "subdir",
        "info",
        "flags",
        "size",
        "wire_size",
        "internaldate",
        "modseq",
    )

    def __init__(self, uid, key, subdir, info, flags, size, wire, internaldate, modseq):
        self.uid: int = uid
        self.key: str = key
        self.subdir: str = subdir
        self.info: str = info
        self.flags: frozenset[str] = flags
        self.size: int = size
        self.wire_size: int = wire
        self.internaldate: float = internaldate
        self.modseq: int = modseq

    @property
    def is_new(self) -> bool:
        """Still in Maildir `new/`: no mail reader has taken it up since delivery."""
        return self.subdir == "new"

    @property
    def saved_at(self) -> float | None:
        """When the message was saved into this folder: the time its Maildir name starts with
        (every delivery, APPEND and COPY makes a new name); None for a name without one."""
        head = self.key.split(".", 1)[0]
        return float(head) if head.isdigit() and len(head) <= 12 else None

    @property
    def filename(self) -> str:
        if self.subdir == "new" and not self.info:
            return self.key
        return self.key + INFO_SEPARATOR + self.info

    def __repr__(self) -> str:
        return f"<Message uid={self.uid} flags={sorted(self.flags)}>"


@dataclass(frozen=True)
class FolderEvent:
    """kind: "exists" (new messages), "flags" (changed flags) or "expunge"."""

    kind: str
    uids: tuple[int, ...]
    source: object = None


@dataclass(frozen=True)
class Listing:
    """What one listing of a folder's directories found (`Folder.listing_job`), for
    `Folder.apply_listing`: names that appeared and vanished since the names it was given,
    the new files with their UIDs and facts ((uid, key, subdir, info, size, wire size,
    internal date) each), the signature taken before listing, and the folder's count of its
    own changes when the names were taken."""

    sig: tuple
    appeared: list
    vanished: list
    arrivals: list
    generation: int


def _listing_changes(sub_paths: tuple[str, str], known: dict[str, set[str]]):
    """(appeared, vanished) (subdir, file name) pairs of a listing against `known` (blocking).

    The names are kept as one set per subdirectory, so comparing a listing of 100,000 files
    with the index is two set differences in C, and only the differences are looked at in
    Python."""
    new_dir, cur_dir = sub_paths
    appeared: list[tuple[str, str]] = []
    vanished: list[tuple[str, str]] = []
    for sub, where in (("cur", cur_dir), ("new", new_dir)):
        try:
            listed = set(os.listdir(where))
        except FileNotFoundError:
            listed = set()
        names = known[sub]
        fresh = listed - names
        if len(listed) - len(fresh) != len(names):  # some known names are gone
            vanished.extend((sub, n) for n in names - listed)
        appeared.extend((sub, n) for n in fresh if not n.startswith("."))
    return appeared, vanished


class Folder:
    def __init__(self, name: str, path: Path, keywords: Keywords | None = None, io=None):
        self.name = name
        self.path = path
        self._path_str = str(path)  # file names are joined as strings: pathlib costs more
        self._sub_paths = (os.path.join(path, "new"), os.path.join(path, "cur"))
        self.keywords = keywords or Keywords(path)
        self._uidfile = uidlist_mod.UidlistFile(path)
        self._uidlist: uidlist_mod.Uidlist | None = None
        self.messages: list[Message] = []
        self._by_uid: dict[int, Message] = {}
        self._by_key: dict[str, Message] = {}
        self.highestmodseq = 1
        self._dir_sig: tuple = ()
        self._own_uid_sig: tuple | None = None
        # Set when the signature was advanced past a change we made ourselves without listing
        # the folder: one listing is still owed once the mtimes are old enough to be trusted.
        self._unverified = False
        # Renames and removals this process made (counted): a listing taken before one of
        # them must not undo it.
        self._own_changes = 0
        self._detached = False  # the directory is gone (removed)
        # Messages this process has just delivered here (`delivered`, in the durable pool),
        # UIDs and facts known, for the reactor to index without listing (`take_delivered`).
        self._due: list[tuple] = []
        self._due_lock = threading.Lock()
        # Change counters that let callers cache per-flag answers (SEARCH UNSEEN, STATUS
        # counts) across changes to other flags: one per Maildir info letter, and one for
        # messages arriving or leaving.
        self.flag_versions: collections.Counter[str] = collections.Counter()
        self.membership_version = 0
        self._parsed: ParsedCache | None = None  # the Maildir's cache, while it stays open
        # File names the index holds, per subdirectory (built at the first listing).
        self._names: dict[str, set[str]] | None = None
        # The uidlist file state (inode, size, mtime) our in-memory copy fully reflects, or None;
        # saved with the index so that a later open can skip parsing an unchanged uidlist.
        self._uid_state: tuple | None = None
        self._uid_lazy = False  # entries not parsed yet (header values from the index)
        self._dirty = False
        self._images = 0  # index images taken (index_image), numbered
        self._written_image = 0  # the number of the last one written
        self._save_lock = threading.Lock()
        self._listeners: list = []
        # UIDs a MOVE is copying out right now: a second MOVE of one of them finds it gone.
        self._moving: set[int] = set()
        self._dir_ino: int | None = None
        self.uid_at_open = 0
        # Renames (flag changes) and unlinks (expunges) decided here, done in the durable pool
        # (`io`) in order; without one, in the caller's thread at once.
        self._ops = FileOps(self._dir_signature, self._ops_settled, io)
        self._load()

    # -- public view -----------------------------------------------------------------------

    @property
    def uidvalidity(self) -> int:
        return self._uidlist.uidvalidity

    @property
    def mailbox_id(self) -> str:
        """An identifier that stays with this mailbox through RENAME and is never given to
        another (RFC 8474 §4): its directory's inode, which moves with it, and its
        UIDVALIDITY, which a mailbox created later under the same name or inode never shares."""
        if self._dir_ino is None:
            self._dir_ino = os.stat(self._path_str).st_ino
        return f"F{self.uidvalidity:x}-{self._dir_ino:x}"

    @property
    def uidnext(self) -> int:
        return self._uidlist.next_uid

    def by_uid(self, uid: int) -> Message | None:
        return self._by_uid.get(uid)

    def uid_of_key(self, key: str) -> int | None:
        msg = self._by_key.get(key)
        return msg.uid if msg else None

    def message_path(self, msg: Message) -> Path:
        return self.path / msg.subdir / msg.filename

    def read(self, msg: Message) -> bytes:
        """The stored (LF) bytes; follows a rename made by another program."""
        data = self.read_present(msg)
        if data is None:
            with self.open(msg) as f:  # renamed behind our back: open() finds it
                return f.read()
        return data

    def follow(self, msg: Message, fn):
        """`fn(path)` on the path `msg`'s file has now (any thread): the index's name, or
        an older one while this folder's renames of it are queued or running (the index
        changes first, the file after); FileNotFoundError when it has none (removed, or
        renamed by another program)."""
        key = msg.key
        return follow(
            lambda: self._ops.names(key),
            lambda: f"{self._path_str}/{msg.subdir}/{msg.filename}",
            fn,
        )

    def open_fd(self, msg: Message) -> int | None:
        """A descriptor of `msg`'s file opened for reading, or None when it has none (any
        thread; follows this folder's queued renames, never refreshes the index)."""
        try:
            return self.follow(msg, _open_for_reading)
        except FileNotFoundError:
            return None

    def read_present(self, msg: Message) -> bytes | None:
        """The stored bytes under the name the index knows (or the one a queued rename has
        yet to move it from), or None when no file has that name now (renamed by another
        program, or removed).  Never refreshes the index, so a worker thread may call it.

        The size is known, so a read of size + 1 that comes back short has hit the end: two
        system calls fewer than a file object's read(), a quarter of a small POP3 RETR."""
        fd = self.open_fd(msg)
        if fd is None:
            return None
        try:
            want = msg.size + 1
            data = os.read(fd, want)
            if len(data) == want:  # bigger than the index says: read on to the end
                parts = [data]
                while chunk := os.read(fd, _READ_PIECE):
                    parts.append(chunk)
                data = b"".join(parts)
            return data
        finally:
            os.close(fd)

    def open(self, msg: Message, buffering: int = -1):
        """The message file, opened for reading; follows a rename made by another program.

        `buffering=0` gives an unbuffered file for callers that read whole pieces."""
        fd = self.open_fd(msg)
        if fd is None:
            self.refresh()
            current = self._by_uid.get(msg.uid)
            if current is None:
                raise FileNotFoundError(msg.filename)
            fd = self.follow(current, _open_for_reading)
        return open(fd, "rb", buffering=buffering)

    @property
    def parsed_cache(self) -> ParsedCache:
        """The parsed-message cache of the Maildir this folder belongs to (kept: a FETCH asks
        for it several times, and finding it by path costs more than the FETCH's own work)."""
        cache = self._parsed
        if cache is None or not cache.is_shared():
            cache = self._parsed = ParsedCache.for_maildir(self._maildir_root())
        return cache

    def parsed_loader(self, preloaded: dict | None = None, in_thread: bool = False):
        """`msg -> content` (header, fields, envelope, tree, wire, raw bytes) answered from
        the parsed cache where it can be.

        `preloaded` maps UID to bytes already read.  `in_thread`: files are read without
        refreshing the index, so the loader may run in a worker thread; a file gone
        meanwhile then reads as empty."""
        return self.parsed_cache.loader(self._read_or_empty if in_thread else self.read, preloaded)

    def claim_move(self, msgs) -> list[Message]:
        """Take `msgs` for one MOVE; those another MOVE has taken already are left out.

        Every session shares this Folder, so two MOVEs of one message (their copies run in
        the durable pool, overlapping) cannot both copy it: the message is moved once."""
        free = [m for m in msgs if m.uid not in self._moving and self._by_uid.get(m.uid) is m]
        self._moving.update(m.uid for m in free)
        return free

    def release_move(self, msgs) -> None:
        self._moving.difference_update(m.uid for m in msgs)

    def expunged_loader(self, preloaded: dict | None = None):
        """The loader for a message another session has expunged: what the cache and a file
        still present can answer; FileNotFoundError for the rest (nothing is guessed, and
        nothing parsed from a missing file reaches the cache)."""
        return self.parsed_cache.loader(self._read_or_raise, preloaded)

    def _read_or_raise(self, msg: Message) -> bytes:
        data = self.read_present(msg)
        if data is None:
            raise FileNotFoundError(msg.filename)
        return data

    def _read_or_empty(self, msg: Message) -> bytes:
        try:
            data = self.read_present(msg)
        except OSError:
            return b""
        return b"" if data is None else data

    def add_listener(self, callback) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _notify(self, kind: str, uids, source=None) -> None:
        if not uids:
            return
        event = FolderEvent(kind, tuple(uids), source)
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:
                log.failure("folder listener failed")

    # -- loading and syncing ---------------------------------------------------------------

    def _dir_signature(self) -> tuple:
        sig = []
        for sub in self._sub_paths:
            try:
                sig.append(os.stat(sub).st_mtime_ns)
            except FileNotFoundError:
                sig.append(0)
        sig.append(self._uidfile.stat_signature())
        return tuple(sig)

    def _load(self) -> None:
        data = self._read_index()
        if data is None or not self._adopt_uidlist(data):
            self._load_uidlist()
        # Messages above this UID got theirs from this process, wherever they were filed (an
        # APPEND with flags lands in cur/): IMAP counts them as \Recent.
        self.uid_at_open = self._uidlist.next_uid - 1
        if data is not None and self._load_index(data):
            return
        self.refresh(force=True)

    def _read_index(self):
        try:
            with open(self.path / INDEX_NAME, "rb") as f:
                # One read, then loads(): marshal.load(f) reads the file object by object
                # (0.5-0.9 s instead of 0.07 s for 100,000 messages).
                data = marshal.loads(f.read())
        except (OSError, EOFError, ValueError, TypeError):
            return None
        if not isinstance(data, tuple) or len(data) != 7 or data[0] != INDEX_VERSION:
            return None
        return data

    def _adopt_uidlist(self, data) -> bool:
        """When the uidlist is byte for byte what the index was saved against, take its header
        values from the index and parse its lines only when a new message needs a UID: a
        cold open of a 100,000-message folder then reads one file instead of two."""
        _, uidvalidity, _, _, _, next_uid, uid_state = data
        if not uid_state or tuple(uid_state) != self._uidfile.stat_signature():
            return False
        inode, size, _ = uid_state
        self._uidlist = uidlist_mod.Uidlist(uidvalidity, next_uid, {}, inode, size)
        self._uid_state = tuple(uid_state)
        self._uid_lazy = True
        return True

    def _parse_lazy_uidlist(self) -> None:
        """Parse the uidlist adopted lazily; call with the lock held."""
        self._uid_lazy = False
        try:
            ul = self._uidfile.load()
        except (uidlist_mod.CorruptUidlist, OSError) as e:
            log.warn(
                "corrupt uidlist in {path}, rewriting it from the index (UIDs kept): {err}",
                path=str(self.path),
                err=str(e),
            )
            ul = None
        if ul is None:
            ul = self._uidlist
            ul.entries = {m.key: m.uid for m in self.messages}
            if self.messages:
                ul.next_uid = max(ul.next_uid, self.messages[-1].uid + 1)
            self._uidfile.rewrite(ul)
        self._uidlist = ul

    def _note_uid_state(self) -> None:
        sig = self._uidfile.stat_signature()
        ul = self._uidlist
        self._uid_state = sig if (sig[0] == ul.inode and sig[1] == ul.offset) else None

    def _load_uidlist(self) -> None:
        try:
            ul = self._uidfile.load()
        except (uidlist_mod.CorruptUidlist, OSError) as e:
            log.warn(
                "corrupt uidlist in {path}, rebuilding with a new UIDVALIDITY: {err}",
                path=str(self.path),
                err=str(e),
            )
            ul = None
            with self._uidfile.locked():
                try:
                    ul = self._uidfile.load()  # another process may have rebuilt it meanwhile
                except (uidlist_mod.CorruptUidlist, OSError):
                    # RFC 3501 §2.3.1.1: UIDs are reassigned, so UIDVALIDITY must grow, also
                    # within the second the old one was made in.
                    valid = max(
                        uidlist_mod.new_uidvalidity(self._maildir_root()),
                        self._previous_uidvalidity() + 1,
                    )
                    ul = uidlist_mod.Uidlist(valid, 1)
                    self._uidfile.rewrite(ul)
        if ul is None:
            with self._uidfile.locked():
                ul = self._uidfile.load()
                if ul is None:
                    valid = uidlist_mod.new_uidvalidity(self._maildir_root())
                    ul = uidlist_mod.Uidlist(valid, 1)
                    self._uidfile.rewrite(ul)
        self._uidlist = ul
        self._note_uid_state()

    def _maildir_root(self) -> Path:
        """INBOX is the Maildir root; every other folder is a `.Name` directory inside it."""
        return self.path if self.name == "INBOX" else self.path.parent

    def _previous_uidvalidity(self) -> int:
        """The UIDVALIDITY clients may hold: from our index, or what is left of the header."""
        prev = 0
        try:
            with open(self.path / INDEX_NAME, "rb") as f:
                prev = int(marshal.loads(f.read())[1])
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            pass
        try:
            with open(self._uidfile.path, "rb") as f:
                m = re.search(rb"\bV(\d{1,10})\b", f.readline(200))
            if m:
                prev = max(prev, int(m.group(1)))
        except OSError:
            pass
        return prev

    def _load_index(self, data) -> bool:
        _, uidvalidity, highest, dir_sig, rows, _, _ = data
        if uidvalidity != self._uidlist.uidvalidity:
            return False
        kw = self.keywords
        flags_of: dict[str, frozenset[str]] = {}  # few distinct infos: convert each once
        with _gc_paused():
            msgs = []
            for uid, key, subdir, info, size, wire, date, modseq in rows:
                flags = flags_of.get(info)
                if flags is None:
                    flags = flags_of[info] = kw.to_flags(info)
                msgs.append(Message(uid, key, subdir, info, flags, size, wire, date, modseq))
            del rows, data
            self._set_messages(msgs)
        self.highestmodseq = highest
        self._dir_sig = tuple(dir_sig[:2]) + (tuple(dir_sig[2]),)
        # Pick up whatever changed since the index was written.
        self.refresh()
        return True

    def save_index(self) -> None:
        """Persist the index (a cache: losing it costs a rescan, never mail); blocking, in
        the thread that owns the folder (shutdown, the admin command, tests).  Queued file
        operations are done first, so the index saved describes the files."""
        self._ops.finish()
        image = self.index_image()
        if image is not None and not self.write_index(image):
            self.index_unsaved()

    def index_image(self) -> tuple[int, bytes] | None:
        """The index as `write_index` saves it, taken now (on the reactor: one consistent
        picture), or None when nothing changed since the last one; the folder counts as saved
        from here on (`index_unsaved` says otherwise when the write fails)."""
        if not self._dirty:
            return None
        with _gc_paused():
            rows = [
                (m.uid, m.key, m.subdir, m.info, m.size, m.wire_size, m.internaldate, m.modseq)
                for m in self.messages
            ]
            data = marshal.dumps(
                (
                    INDEX_VERSION,
                    self.uidvalidity,
                    self.highestmodseq,
                    self._saved_signature(),
                    rows,
                    self.uidnext,
                    list(self._uid_state) if self._uid_state else None,
                )
            )
            del rows
        self._dirty = False
        self._images += 1
        return self._images, data

    def _saved_signature(self) -> list:
        """The directory signature the saved index carries.  With file operations still
        queued the directories do not show the index yet: one no directory has makes the next
        open list them (after a crash, the index then learns which were done)."""
        sig = self._dir_sig
        if not sig or self._ops.pending:
            return [0, 0, list(sig[2]) if sig else [0, 0, 0]]
        return list(sig[:2]) + [list(sig[2])]

    def write_index(self, image: tuple[int, bytes]) -> bool:
        """Write an `index_image` (blocking: the durable pool may run it); False when it could
        not be written.  An image older than one written already is skipped: the saved index
        never goes back (a HIGHESTMODSEQ read from it must never fall)."""
        number, data = image
        with self._save_lock:
            if number <= self._written_image:
                return True
            tmp = self.path / f"{INDEX_NAME}.tmp{os.getpid()}"
            try:
                with open(tmp, "wb", opener=private_opener) as f:
                    f.write(data)
                os.replace(tmp, self.path / INDEX_NAME)
            except OSError as e:
                log.warn("cannot save index {path}: {err}", path=str(self.path), err=str(e))
                return False
            self._written_image = number
            return True

    def index_unsaved(self) -> None:
        """A write of an image failed: the next save writes the index again."""
        self._dirty = True

    def _set_messages(self, msgs: list[Message]) -> None:
        self.membership_version += 1
        msgs.sort(key=_by_uid_key)
        self.messages = msgs
        self._by_uid = {m.uid: m for m in msgs}
        self._by_key = {m.key: m for m in msgs}

    def _drop(self, gone: list[Message]) -> None:
        """Take `gone` out of the index: the list filtered (it stays in UID order) and the
        two maps trimmed, not rebuilt; an EXPUNGE of 40,000 messages in steps of 2,000 did
        a sort and two maps of the whole folder per step."""
        keys = {m.key for m in gone}
        self.membership_version += 1
        self.messages = [m for m in self.messages if m.key not in keys]
        by_uid, by_key = self._by_uid, self._by_key
        for m in gone:
            if by_uid.get(m.uid) is m:
                del by_uid[m.uid]
            if by_key.get(m.key) is m:
                del by_key[m.key]

    def _stable(self, sig: tuple) -> bool:
        now = time.time_ns()
        return all(now - t > MTIME_SLACK_NS for t in sig[:2])

    def needs_listing(self, force: bool = False) -> bool:
        """Whether syncing the index takes a listing of the directories (three stats decide):
        they changed since the last one, their mtimes are too recent to prove nothing did, or
        one is owed to verify our own changes."""
        if force:
            return True
        sig = self._dir_signature()
        if sig != self._dir_sig:
            return True
        stable = self._stable(sig)
        if stable and not self._unverified:
            return False
        # Only our own renames since the last listing (any later change would have moved an
        # mtime): listing now would find nothing; verify once stable.
        return not (not stable and self._unverified)

    def refresh(self, force: bool = False) -> None:
        """Sync the index with the directories; assign UIDs to new files; notify listeners.
        Blocking: the listing runs in the caller's thread (`listing_job` is the reactor's way,
        with the listing in the durable pool)."""
        if self.needs_listing(force):
            self.apply_listing(self.listing_job()())

    def listing_job(self):
        """A blocking callable (for the durable pool) listing the directories against the
        names the index holds now (copied here, on the reactor); its `Listing` goes to
        `apply_listing`, back on the reactor."""
        if self._names is None:
            self._names = {"cur": set(), "new": set()}
            for m in self.messages:
                self._names[m.subdir].add(m.filename)
        known = {sub: set(names) for sub, names in self._names.items()}
        return functools.partial(self._list, known, self._own_changes, self._ops.barrier())

    def listing_after_ops(self, submit):
        """Reactor: `submit(listing_job())` once the file operations queued so far are done
        (a listing meanwhile would find an expunged file still there, or a flag's old name):
        Deferred[Listing], never one fired already and paused (a command handler that returns
        it counts on `called`)."""
        waited = self._ops.when_done()
        if waited is None:
            return submit(self.listing_job())
        return waited.addCallback(lambda _: submit(self.listing_job()))

    def _list(self, known: dict[str, set[str]], generation: int, barrier: int) -> Listing:
        """Blocking, any thread: what changed in the directories since `known`; new files get
        their UIDs (the uidlist appended under its lock) and their facts (a stat) here.

        The folder's file operations decided before `known` was copied are done first (here,
        when still queued) and the others wait until the listing is over: it sees the
        directories as the index held them, plus what other programs changed."""
        with self._ops.ready_for_listing(barrier):
            return self._list_held(known, generation)

    def _list_held(self, known: dict[str, set[str]], generation: int) -> Listing:
        # The signature taken before listing: anything changed since shows on the next check.
        sig = self._dir_signature()
        appeared, vanished = _listing_changes(self._sub_paths, known)
        # cur/ first, so a key in both ends up as new/'s.
        on_disk: dict[str, tuple[str, str]] = {}
        for sub, filename in appeared:
            key, info = split_filename(filename)
            if key not in self._by_key:
                on_disk[key] = (sub, info)
        arrivals = self._arrivals(list(on_disk), on_disk) if on_disk else []
        return Listing(sig, appeared, vanished, arrivals, generation)

    def apply_listing(self, listing: Listing) -> None:
        """Reactor: bring the index to what `listing` saw; notify listeners.

        New files are always taken (a key indexed meanwhile is skipped).  Renames and removals
        are taken only when this process changed no file of the folder since the listing's
        names were copied (a flag toggled twice meanwhile would otherwise be undone); else the
        signature is left as it was, so the next check lists again."""
        self._ops.settle()  # operations the listing ran first
        if self._detached:
            return
        if listing.generation != self._own_changes:
            added = self._admit(listing.arrivals)
            if added:
                self._notify("exists", [m.uid for m in added])
            return
        self._unverified = False
        # Names that appeared: a known key under a new name was renamed (flags, new/ -> cur/).
        renamed: dict[str, tuple[str, str, str]] = {}
        for sub, filename in listing.appeared:
            key, info = split_filename(filename)
            if key in self._by_key:
                renamed[key] = (sub, info, filename)
        gone = []
        changed = []
        for sub, filename in listing.vanished:
            self._names[sub].discard(filename)
            key, _ = split_filename(filename)
            msg = self._by_key.get(key)
            if msg is None or msg.subdir != sub or msg.filename != filename:
                continue  # a name we had already replaced
            moved = renamed.pop(key, None)
            if moved is None:
                gone.append(msg)
                continue
            new_sub, info, new_name = moved
            self._names[new_sub].add(new_name)
            msg.subdir = new_sub
            if msg.info != info:
                self.flag_versions.update(set(msg.info) ^ set(info))
                msg.info = info
                msg.flags = self.keywords.to_flags(info)
                self.highestmodseq += 1
                msg.modseq = self.highestmodseq
                changed.append(msg.uid)
            self._dirty = True
        for sub, _, filename in renamed.values():
            self._names[sub].add(filename)  # a second copy of a known key: not a new message
        added = self._admit(listing.arrivals)
        if gone:
            gone_keys = {m.key for m in gone}
            self.highestmodseq += 1
            self._set_messages([m for m in self.messages if m.key not in gone_keys])
            self._dirty = True
        sig = listing.sig
        # Our own uidlist append is not such a change (we hold what it wrote): keep its result,
        # or every later open would rescan the folder.
        if self._own_uid_sig is not None:
            sig = sig[:2] + (self._own_uid_sig,)
            self._own_uid_sig = None
        if sig != self._dir_sig:
            self._dirty = True  # so that the saved index carries the new signature
        self._dir_sig = sig
        if gone:
            self._notify("expunge", [m.uid for m in gone])
        if changed:
            self._notify("flags", changed)
        if added:
            self._notify("exists", [m.uid for m in added])

    def _add_new(
        self, keys: list[str], on_disk: dict[str, tuple[str, str]], facts: dict | None = None
    ) -> list[Message]:
        """Index new files; `facts`: (size, wire size, internal date) by key where they are
        known already (the copies this process just made), so their files are not looked at."""
        return self._admit(self._arrivals(keys, on_disk, facts))

    def _assign_uids(self, keys: list[str]) -> dict[str, int]:
        """The UIDs of `keys`, new ones appended to the uidlist under its lock (blocking, any
        thread: the lock also keeps the threads of this process apart)."""
        known = self._uidlist.entries
        if all(k in known for k in keys):
            return known
        with self._uidfile.locked():
            if self._uid_lazy:
                self._parse_lazy_uidlist()
            self._uidlist = self._uidfile.catch_up(self._uidlist)
            known = self._uidlist.entries
            fresh = []
            # Order new files by the delivery time at the head of their name (arrival order).
            for key in sorted((k for k in keys if k not in known), key=_arrival_order):
                uid = self._uidlist.next_uid
                self._uidlist.next_uid += 1
                known[key] = uid
                fresh.append((uid, key))
            if fresh:
                self._uidfile.append(self._uidlist, fresh)
                self._maybe_compact(len(self.messages) + len(keys))
                self._own_uid_sig = self._uidfile.stat_signature()
            self._note_uid_state()
        return known

    def _arrivals(
        self, keys: list[str], on_disk: dict[str, tuple[str, str]], facts: dict | None = None
    ) -> list[tuple]:
        """(uid, key, subdir, info, size, wire size, internal date) of new files (blocking:
        UIDs assigned, files without `facts` looked at); a file gone meanwhile is left out."""
        known = self._assign_uids(keys)
        out = []
        for key in keys:
            sub, info = on_disk[key]
            known_facts = facts.get(key) if facts else None
            if known_facts is not None:
                size, wire, date = known_facts
            else:
                filename = key + INFO_SEPARATOR + info if (info or sub == "cur") else key
                size, wire, date = self._file_facts(key, self.path / sub / filename)
            if size is None:
                continue  # vanished or unreadable: skipped with a log line
            out.append((known[key], key, sub, info, size, wire, date))
        return out

    def _admit(self, arrivals: list[tuple]) -> list[Message]:
        """Reactor: put `_arrivals`' messages into the index (no file access); those whose
        key it holds already are left out."""
        added = []
        for uid, key, sub, info, size, wire, date in arrivals:
            if key in self._by_key:
                continue
            self.highestmodseq += 1
            if self._names is not None:
                self._names[sub].add(key + INFO_SEPARATOR + info if (info or sub == "cur") else key)
            msg = Message(
                uid,
                key,
                sub,
                info,
                self.keywords.to_flags(info),
                size,
                wire,
                date,
                self.highestmodseq,
            )
            added.append(msg)
        if added:
            added.sort(key=lambda m: m.uid)
            if self.messages and added[0].uid < self.messages[-1].uid:
                self._set_messages(self.messages + added)
            else:
                self.membership_version += 1
                self.messages.extend(added)
                for m in added:
                    self._by_uid[m.uid] = m
                    self._by_key[m.key] = m
            self._dirty = True
        return added

    def _file_facts(self, key: str, path: Path) -> tuple[int | None, int, float]:
        """Size, wire size and internal date of a newly seen file (one stat; a read only
        when the name lacks `,W=`)."""
        try:
            st = os.stat(path)
        except OSError as e:
            log.warn("skipping unreadable message {path}: {err}", path=str(path), err=str(e))
            return None, 0, 0.0
        size = size_in_name(key)
        if size is None:
            size = st.st_size
        w = _WIRE_RE.search(key)
        if w:
            wire = int(w.group(1))
        else:
            try:
                wire = wire_size(path.read_bytes())
            except OSError as e:
                log.warn("skipping unreadable message {path}: {err}", path=str(path), err=str(e))
                return None, 0, 0.0
        return size, wire, st.st_mtime

    def _maybe_compact(self, live: int) -> None:
        """Drop the uidlist lines of messages whose files are gone; call with the lock held.

        What is kept comes from a fresh listing taken under the lock (not from self.messages,
        which does not hold the messages being added yet, nor those another process indexed):
        a line dropped wrongly would give a live message a new UID."""
        ul = self._uidlist
        if len(ul.entries) <= 2 * live + 1000:
            return
        present: set[str] = set()
        for sub in ("new", "cur"):  # new/ first: a file moving new/ -> cur/ meanwhile is in cur/
            try:
                present.update(split_filename(n)[0] for n in os.listdir(self.path / sub))
            except FileNotFoundError:
                continue
        kept = {k: u for k, u in ul.entries.items() if k in present}
        if len(kept) < len(ul.entries):
            ul.entries = kept
            self._uidfile.rewrite(ul)

    # -- changes ---------------------------------------------------------------------------

    def store_flags(self, msgs, flags, mode: str, unchanged_since: int | None = None, source=None):
        """Set, add or remove flags; returns (changed messages, messages refused by
        UNCHANGEDSINCE).  RFC 7162 §3.1.3: a message whose modseq is above unchanged_since
        is not changed.

        The index changes now (the next STORE on a message starts from this one's result);
        the renames are queued (`FileOps`): `when_written` says when they are on disk."""
        flags = frozenset(f for f in flags if f != "\\Recent")
        changed, refused = [], []
        # (info letters, flags) before -> (new info, new flags, letters changed), or None for
        # no change: a STORE over many messages meets few distinct flag sets, each worked out
        # once.
        transitions: dict[tuple, tuple | None] = {}
        touched: collections.Counter[str] = collections.Counter()
        new_dir = self._sub_paths[1]
        queue_rename = self._ops.queue_rename
        try:
            for msg in msgs:
                if unchanged_since is not None and msg.modseq > unchanged_since:
                    refused.append(msg)
                    continue
                state = (msg.info, msg.flags)
                if state in transitions:
                    step = transitions[state]
                else:
                    step = transitions[state] = self._transition(msg, flags, mode)
                    if self.keywords.unsaved:  # a new keyword: its letter is written first
                        self._ops.queue_call(self.keywords.save_unsaved)
                if step is None:
                    continue
                info, new_flags, letters = step
                old_name = msg.filename
                new_name = msg.key + INFO_SEPARATOR + info
                # Plain strings: pathlib's joins cost more than the rename itself.
                old_dir = self._sub_paths[0] if msg.subdir == "new" else new_dir
                # Queued before the fields change: a reader in another thread that meets
                # neither name knows the old one from the queue.
                queue_rename(msg.key, f"{old_dir}/{old_name}", f"{new_dir}/{new_name}")
                if self._names is not None:
                    self._names[msg.subdir].discard(old_name)
                    self._names["cur"].add(new_name)
                touched.update(letters)
                msg.subdir, msg.info = "cur", info
                msg.flags = new_flags
                self.highestmodseq += 1
                msg.modseq = self.highestmodseq
                changed.append(msg)
        finally:
            self.flag_versions.update(touched)
            self._ops.start()
        if changed:
            self._own_changes += 1
            self._dirty = True
            self._notify("flags", [m.uid for m in changed], source)
        return changed, refused

    def _transition(self, msg: Message, flags: frozenset[str], mode: str) -> tuple | None:
        """What `store_flags` does to a message with `msg`'s info letters: (new info, new
        flags, info letters changed), or None when its flags stay as they are."""
        if mode == "set":
            new = flags
        elif mode == "add":
            new = msg.flags | flags
        else:
            new = msg.flags - flags
        if new == msg.flags:
            return None
        info = self.keywords.to_info(new)
        return info, self.keywords.to_flags(info), tuple(set(msg.info) ^ set(info))

    def _ops_settled(self, batch: Batch) -> None:
        """A batch of our own renames or unlinks is on disk (owner's thread).  When the index
        matched the directories just before it, it matches them after, so the next access need
        not list the folder (a STATUS during constant flag changes would otherwise list 10,000
        files each time).  A change by another program within the same mtime tick is caught by
        the one verifying listing owed once the mtimes are older than the slack.  A batch that
        failed (a file removed or renamed by another program) leaves a listing owed at once."""
        # Saved again: an index image taken while the batch was queued carries no signature.
        self._dirty = True
        if batch.lost:
            self._dir_sig = ()
            self._unverified = False
            if self._ops.io is not None and threadable.isInIOThread() and not self._detached:
                d = self.listing_after_ops(self._ops.io.submit)
                d.addCallbacks(
                    self.apply_listing,
                    lambda f: log.failure("listing {name} failed", f, name=self.name),
                )
            return
        if batch.before == self._dir_sig:
            self._dir_sig = batch.after
            self._unverified = True

    @property
    def file_ops_pending(self) -> bool:
        """Renames or unlinks decided here and not yet done on disk."""
        return self._ops.pending

    def when_written(self, result=None):
        """`result` once the file operations queued on this folder so far (this command's
        among them) are done on disk: itself when none is pending, else a Deferred firing with
        it; a Deferred `result` is waited for first (reactor)."""
        return self._ops.when_done(result)

    def finish_file_ops(self) -> None:
        """Run the queued file operations now, in the caller's thread (blocking: shutdown)."""
        self._ops.finish()

    def run_file_ops(self) -> None:
        """Run the queued file operations now, in any thread (blocking: the durable pool's
        RENAME of the folder, before its directory moves away from their paths)."""
        self._ops.run_queued()

    def index_copies(self, copies: list[tuple[str, str, int, int, float]]) -> dict[str, int]:
        """Index the files `Mailbox.copy_files` has just made in cur/ ((key, info, size, wire
        size, internal date) each), without listing the folder or looking at each file: a
        COPY of 20,000 messages would otherwise stat them all on the reactor.  UIDs by key."""
        self.take_delivered()  # `copied` gave them their UIDs in the pool
        fresh = [c for c in copies if c[0] not in self._by_key]
        if fresh:
            added = self._add_new(
                [c[0] for c in fresh],
                {c[0]: ("cur", c[1]) for c in fresh},
                {c[0]: c[2:] for c in fresh},
            )
            if added:
                self._notify("exists", [m.uid for m in added])
        return {key: m.uid for key, *_ in copies if (m := self._by_key.get(key)) is not None}

    def delivered(self, key: str, sub: str, info: str, path: str) -> None:
        """Blocking, in the delivering thread: the file this process has just placed at
        `path` (`sub`/key with `info`) gets its UID here (the uidlist appended under its
        lock) and waits for `take_delivered`, so the reactor indexes it without listing.
        A caller that holds the uidlist's lock numbers the message itself (the import):
        nothing is recorded then."""
        if self._uidfile.held_here():
            return
        size, wire, date = self._file_facts(key, Path(path))
        if size is None:
            return  # gone already: a listing finds out
        uid = self._assign_uids([key])[key]
        with self._due_lock:
            self._due.append((uid, key, sub, info, size, wire, date))

    def record_if_missed(self, key: str, sub: str, info: str, path: str) -> None:
        """Blocking, in the delivering thread, once the folder is in memory: a file this
        process has just delivered that neither the index nor `delivered` holds (another
        thread loaded the folder while the delivery ran, listing it before the file was
        there) is recorded now, so the reactor indexes it without looking at the disk.  A
        record twice is harmless: the UID is the uidlist's, and the index takes a key once."""
        if key in self._by_key:
            return
        with self._due_lock:
            if any(due[1] == key for due in self._due):
                return
        self.delivered(key, sub, info, path)

    def copied(self, copies: list[tuple[str, str, int, int, float]]) -> None:
        """Blocking, in the copying thread: the files `Mailbox.copy_files` has just made in
        cur/ ((key, info, size, wire size, internal date) each) get their UIDs here (one
        uidlist append) and wait for `take_delivered`, as a delivery's do."""
        known = self._assign_uids([c[0] for c in copies])
        with self._due_lock:
            self._due.extend((known[c[0]], c[0], "cur", *c[1:]) for c in copies)

    def withdrawn(self, key: str) -> None:
        """A delivered file taken back before it was announced (any thread)."""
        with self._due_lock:
            self._due = [a for a in self._due if a[1] != key]

    def take_delivered(self) -> bool:
        """Reactor: index what `delivered` recorded (no file access) and tell the listeners;
        False when nothing was waiting."""
        with self._due_lock:
            due, self._due = self._due, []
        if not due or self._detached:
            return False
        added = self._admit(due)
        if added:
            self._notify("exists", [m.uid for m in added])
        return True

    def index_delivered(self, key: str) -> int | None:
        """Index one file this process has just delivered (Mailbox.deliver's key),
        without listing the folder: an APPEND into a big folder stays cheap."""
        msg = self._by_key.get(key)
        if msg is not None:
            return msg.uid
        # Mailbox.deliver (or record_if_missed) gave it its UID in the pool: no file access.
        self.take_delivered()
        msg = self._by_key.get(key)
        return msg.uid if msg is not None else None  # gone already: a listing tells

    def removed(self) -> None:
        """The folder's directory is gone (DELETE, in the durable pool): every message
        leaves the index, and the sessions that have it open hear them expunged."""
        self._detached = True
        uids = [m.uid for m in self.messages]
        self._set_messages([])
        self._names = None
        self.highestmodseq += 1
        self._dirty = False  # nowhere left to save it
        self._notify("expunge", uids)

    def expunge(self, msgs, source=None, quota=None) -> list[int]:
        """Remove the messages from the index now and queue their files' unlinks
        (`when_written` says when they are gone); returns the UIDs removed (ascending)."""
        removed, freed = [], 0
        new_dir, cur_dir = self._sub_paths
        queue_unlink = self._ops.queue_unlink
        for msg in msgs:
            # Plain strings: pathlib's joins cost more than the unlink itself.
            where = new_dir if msg.subdir == "new" else cur_dir
            queue_unlink(msg.key, f"{where}/{msg.filename}")
            if self._names is not None:
                self._names[msg.subdir].discard(msg.filename)
            removed.append(msg)
            freed += msg.size
        if not removed:
            return []
        if quota is not None:  # maildirsize is appended to after the unlinks, in the pool
            self._ops.queue_call(functools.partial(quota.add, -freed, -len(removed)))
        self._ops.start()
        self._own_changes += 1
        self._drop(removed)
        self.highestmodseq += 1
        self._dirty = True
        uids = sorted(m.uid for m in removed)
        self._notify("expunge", uids, source)
        return uids


_by_uid_key = operator.attrgetter("uid")


def _open_for_reading(path: str) -> int:
    return os.open(path, os.O_RDONLY)


@contextmanager
def _gc_paused():
    """Building 100,000 index objects triggers the cyclic GC over and over (5x the cost of the
    work itself); none of them form cycles, so pause it meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _arrival_order(key: str):
    # "<sec>.M<usec>P<pid>...": the microseconds are not zero-padded, so compare them as numbers
    # (as text, M102178 would sort before M37552 delivered earlier in the same second).
    head, _, rest = key.partition(".")
    m = _USEC_RE.match(rest)
    return (int(head) if head.isdigit() else 0, int(m.group(1)) if m else 0, key)
