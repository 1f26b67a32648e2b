"""The durable outbound spool: the only code that reads or writes files under the queue folder.

Layout (docs/internals.md): an entry is one spool file, ``entries/<id>``: a line of JSON (the
envelope as accepted: sender, recipients, DSN parameters), then the message bytes.  It is
written in tmp/, fsynced, renamed into entries/ and entries/ fsynced: two fsyncs per queued
message, as few as a file that must survive a crash can take (Postfix takes one, trusting its
file system's journal with the directory entry).  The entry exists from the rename, and it is
never rewritten: what delivery attempts and the admin command change (per-recipient state,
attempts, next attempt) goes to ``env/<id>.json``, which from then on replaces the spool file's
first line.  Nothing is acknowledged before the fsyncs return, so a spool file a crash left
short, or whose first line does not parse, was never accepted: it is moved to ``corrupt/`` at
the next start.  As in Postfix, the disk is the truth and the runner's memory is a cache
rebuilt from it at start.

Every method here blocks on the disk, in the caller's thread: the admin command's, or the
durable-I/O service's pool (mailsuite.durable), where the reactor hands them with
``queue.io.submit(queue.enqueue, ...)`` and whose group commit shares fsyncs between concurrent
writers.  There is no second, asynchronous version of any of them.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import secrets
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailsuite.durable import DurableIO

# Recipient states.  "failed" means a permanent failure whose bounce is still owed (dsn_sent
# False) or already sent; "delivered" likewise for NOTIFY=SUCCESS notices.
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

TRIGGER_NAME = "flush.trigger"
# Touched by an enqueue in a process without a runner (`mailsuite deliver`): "look for new
# entries", cheaper for the server than a full re-read.
NEW_TRIGGER_NAME = "new.trigger"

# One encoder for every envelope: json.dumps with arguments builds a new one each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))

# A spool file's first line is read in pieces of this size (one read for most envelopes).
_HEAD_READ = 16 * 1024


def _unlink_quietly(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


class QueueError(Exception):
    """A queue entry is missing or damaged."""


class NoSuchEntry(QueueError):
    pass


@dataclass
class QueuedRecipient:
    address: str
    # RFC 3461 §4.1: NOTIFY is NEVER or a set of SUCCESS/FAILURE/DELAY; None = not given.
    notify: list[str] | None = None
    # RFC 3461 §4.2: ORCPT as given, "addr-type;xtext".
    orcpt: str | None = None
    state: str = PENDING
    # RFC 3464 §2.3.4 status "x.y.z", the remote reply text and the host that gave it.
    status: str = ""
    diagnostic: str = ""
    remote_mta: str = ""
    # Whether the DSN owed for this recipient's final state has been sent (or is not owed).
    dsn_sent: bool = False
    updated: float = 0.0


@dataclass
class QueueEntry:
    id: str
    mail_from: str
    recipients: list[QueuedRecipient]
    created: float
    size: int = 0
    dsn_ret: str | None = None  # RFC 3461 §4.3: "FULL" or "HDRS"
    dsn_envid: str | None = None  # RFC 3461 §4.4
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    delay_warned: bool = False
    # Set for queued DSNs themselves: RFC 3461 §6.2 forbids DSNs about DSNs.
    is_bounce: bool = False
    # Bumped by every admin change (`mailsuite queue retry/bounce`), so the runner can tell
    # that the copy it holds in memory is stale.
    generation: int = 0

    @property
    def pending(self) -> list[QueuedRecipient]:
        return [r for r in self.recipients if r.state == PENDING]

    @property
    def finished(self) -> bool:
        """No delivery left to try and no notice left to send: the entry can go."""
        return all(r.state != PENDING and r.dsn_sent for r in self.recipients)

    def to_json(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict walks and deep-copies every value, which cost a seventh
        # of the reactor's time in the relay benchmark (it runs twice per queued message).
        data = dict(vars(self))
        data["recipients"] = [
            dict(vars(r), notify=None if r.notify is None else list(r.notify))
            for r in self.recipients
        ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueEntry:
        rcpts = [QueuedRecipient(**r) for r in data.get("recipients", [])]
        return cls(recipients=rcpts, **{k: v for k, v in data.items() if k in _ENTRY_FIELDS})


_ENTRY_FIELDS = frozenset(f.name for f in dataclasses.fields(QueueEntry)) - {"recipients"}


def _recipient_from(value: Any) -> QueuedRecipient:
    """Accept the delivery layer's Recipient objects, dicts or plain address strings."""
    if isinstance(value, QueuedRecipient):
        return dataclasses.replace(value)
    if isinstance(value, str):
        return QueuedRecipient(address=value)
    if isinstance(value, dict):
        get = value.get
    else:

        def get(name, default=None):
            return getattr(value, name, default)

    notify = get("notify", None)
    if notify is None:
        notify = get("dsn_notify", None)
    orcpt = get("orcpt", None)
    if orcpt is None:
        orcpt = get("dsn_orcpt", None)
    if isinstance(notify, str):
        notify = [n.strip().upper() for n in notify.split(",") if n.strip()]
    elif notify is not None:
        notify = [str(n).upper() for n in notify]
    return QueuedRecipient(address=str(get("address")), notify=notify, orcpt=orcpt)


def new_queue_id() -> str:
    """Sortable by arrival (microsecond time in hex) and unique across processes."""
    return f"{time.time_ns() // 1000:014X}{random.getrandbits(24):06X}"


def _valid_id(queue_id: str) -> bool:
    return bool(queue_id) and queue_id.isalnum() and len(queue_id) <= 64


class Queue:
    """The spool at ``path``; safe to use from the server and the admin command at once."""

    def __init__(self, path: Path | str, io: DurableIO | None = None):
        self.path = Path(path)
        self.io = io if io is not None else DurableIO()
        self.entry_dir = self.path / "entries"
        self.env_dir = self.path / "env"
        self.tmp_dir = self.path / "tmp"
        self._dirs = tuple(os.fspath(d) for d in (self.entry_dir, self.env_dir, self.tmp_dir))
        self._lock_path = os.fspath(self.path / "lock")
        # The lock file, opened at its first use and held open (see _lock); the thread lock
        # orders this process's own users of it.
        self._lock_fd: int | None = None
        self._thread_lock = threading.Lock()
        # Entries whose envelope is still their spool file's first line, as far as this
        # process knows (it queued them, or read them when they had no env/<id>.json): their
        # removal skips the unlink of an envelope that is not there.
        self._bare: set[str] = set()
        for d in (self.path, self.entry_dir, self.env_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        for d in self._dirs[:2]:
            # Never removed while the queue is in use: fsynced through a descriptor held open.
            self.io.commit.hold(d)
        self.trigger_path = self.path / TRIGGER_NAME
        self.new_trigger_path = self.path / NEW_TRIGGER_NAME
        # Called as cb(entry, data) from the enqueueing thread once an entry is durable, so
        # the runner in the same process starts on it at once, without reading it back.
        self._listeners: list = []
        self._adopt_two_file_entries()

    def add_listener(self, callback) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # -- writing -------------------------------------------------------------------------

    def enqueue(
        self,
        mail_from: str,
        recipients: Iterable[Any],
        data: bytes,
        dsn_ret: str | None = None,
        dsn_envid: str | None = None,
        *,
        is_bounce: bool = False,
        next_attempt: float | None = None,
    ) -> str:
        """Store a message durably and return its id; blocking (two fsyncs, group-committed).
        On failure nothing is left: not acknowledged, so not to be delivered either."""
        entry = self._new_entry(
            mail_from, recipients, data, dsn_ret, dsn_envid, is_bounce, next_attempt
        )
        spool, _, tmp = self._file_names(entry.id)
        self.io.write_file(tmp, self._spool_bytes(entry, data), spool)
        self._bare.add(entry.id)
        self._announce(entry, data)
        return entry.id

    def _new_entry(
        self, mail_from, recipients, data, dsn_ret, dsn_envid, is_bounce, next_attempt
    ) -> QueueEntry:
        rcpts = [_recipient_from(r) for r in recipients]
        if not rcpts:
            raise QueueError("no recipients")
        now = time.time()
        return QueueEntry(
            id=new_queue_id(),
            mail_from=mail_from or "",
            recipients=rcpts,
            created=now,
            size=len(data),
            dsn_ret=dsn_ret.upper() if dsn_ret else None,
            dsn_envid=dsn_envid,
            next_attempt=now if next_attempt is None else next_attempt,
            is_bounce=is_bounce,
        )

    def _announce(self, entry: QueueEntry, data: bytes) -> None:
        # Each listener may change the entry it is given: the last one gets this (new, not
        # otherwise kept) object, any others a copy each.
        listeners = list(self._listeners)
        for i, callback in enumerate(listeners):
            last = i == len(listeners) - 1
            callback(entry if last else QueueEntry.from_json(entry.to_json()), data)
        if not self._listeners:
            self._touch(self.new_trigger_path)

    def save(self, entry: QueueEntry) -> str:
        """Rewrite an entry's envelope: "saved", or "deleted"/"stale" (nothing written) when
        the admin command deleted or changed it meanwhile.

        The lock makes the check and the rename atomic against the admin command, so a
        delivery finishing in the server can neither resurrect a deleted entry nor undo a
        `queue bounce`.
        """
        with self._lock():
            try:
                on_disk = self.load(entry.id)
            except NoSuchEntry:
                return "deleted"
            except QueueError:
                on_disk = entry
            if on_disk.generation != entry.generation:
                return "stale"
            self._write_envelope(entry)
            return "saved"

    def remove(self, queue_id: str) -> bool:
        """Delete an entry: spool file first, so a crash half-way leaves an orphan envelope
        (nobody's, see clean_orphans), never an entry gone back to its first envelope."""
        return self.remove_many([queue_id]) == 1

    def remove_many(self, queue_ids: list[str]) -> int:
        """Delete entries (one lock for the batch: the runner removes finished entries in
        batches); returns how many existed.

        No fsync: a removal lost in a crash means one more delivery, never a lost message
        (Postfix does not sync deletions either).  An entry this process knows to have no
        envelope of its own (`_bare`: most relayed messages, delivered at the first attempt)
        costs one unlink, not two; should another process have written one meanwhile (the
        admin command's `queue retry` while the delivery was under way), that envelope is
        left without its spool file, which makes it nobody's: no entry can take it up (ids
        are never reused) and clean_orphans removes it at the next start or flush.
        """
        names = [self._file_names(q) for q in queue_ids]
        with self._lock():
            existed = sum(_unlink_quietly(spool) for spool, _, _ in names)
        # Without its spool file an envelope is nobody's; it can go outside the lock.
        bare = self._bare
        for queue_id, (_, env, _) in zip(queue_ids, names, strict=True):
            if queue_id in bare:
                bare.discard(queue_id)
            else:
                _unlink_quietly(env)
        return existed

    def modify(self, queue_id: str, change) -> QueueEntry:
        """Load, apply ``change(entry)`` and save under the lock (admin retry/bounce)."""
        with self._lock():
            entry = self.load(queue_id)
            change(entry)
            entry.generation += 1
            self._write_envelope(entry)
            return entry

    def trigger(self) -> None:
        """Ask a running runner to rescan the spool now (``mailsuite queue flush``)."""
        self._touch(self.trigger_path)

    def take_trigger(self) -> bool:
        """True once per trigger: the runner polls this."""
        return _unlink_quietly(self.trigger_path)

    def take_new_trigger(self) -> bool:
        """True once after another process enqueued something."""
        return _unlink_quietly(self.new_trigger_path)

    @staticmethod
    def _touch(path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)

    # -- reading -------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Ids of the entries, oldest first."""
        return sorted(name for name in os.listdir(self.entry_dir) if _valid_id(name))

    def exists(self, queue_id: str) -> bool:
        return os.path.exists(self._file_names(queue_id)[0])

    def load(self, queue_id: str) -> QueueEntry:
        """The entry's current envelope: env/<id>.json once written, else its spool file's."""
        spool, env, _ = self._file_names(queue_id)
        try:
            with open(env, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            with self._open_spool(queue_id) as f:
                raw = self._envelope_line(queue_id, f)[0]
            self._bare.add(queue_id)
        else:
            self._bare.discard(queue_id)
            if not os.path.exists(spool):
                raise NoSuchEntry(queue_id)  # removed: the envelope was next to go
        return self._decode(queue_id, raw)

    def _decode(self, queue_id: str, raw: bytes) -> QueueEntry:
        try:
            return QueueEntry.from_json(json.loads(raw))
        except (ValueError, TypeError) as e:
            raise QueueError(f"{queue_id}: damaged envelope: {e}") from None

    def entries(self) -> Iterator[QueueEntry]:
        """Every readable entry; damaged ones are skipped (the runner logs them)."""
        for queue_id in self.ids():
            try:
                yield self.load(queue_id)
            except QueueError:
                continue

    def read_message(self, queue_id: str) -> bytes:
        """The message, as accepted (after the spool file's first line)."""
        try:
            raw = self.io.read_all(self._file_names(queue_id)[0])
        except FileNotFoundError:
            raise NoSuchEntry(queue_id) from None
        end = raw.find(b"\n")
        if end < 0:
            raise QueueError(f"{queue_id}: damaged spool file: no end of envelope")
        return raw[end + 1 :]

    def _open_spool(self, queue_id: str):
        try:
            return open(self._file_names(queue_id)[0], "rb", buffering=0)
        except FileNotFoundError:
            raise NoSuchEntry(queue_id) from None

    @staticmethod
    def _envelope_line(queue_id: str, f) -> tuple[bytes, bytes]:
        """Reads a spool file up to the end of its first line: (that line, what was read
        past it)."""
        head = b""
        while chunk := f.read(_HEAD_READ):
            end = chunk.find(b"\n")
            if end >= 0:
                return head + chunk[:end], chunk[end + 1 :]
            head += chunk
        raise QueueError(f"{queue_id}: damaged spool file: no end of envelope")

    def clean_orphans(self, older_than: float = 3600.0) -> int:
        """Move spool files a crash left incomplete to ``corrupt/`` (they were never
        acknowledged, see the module docstring), and remove envelopes without a spool file
        and stale tmp files older than `older_than` seconds."""
        now = time.time()
        removed = 0
        ids = set(self.ids())
        # Forget entries removed by another process (dropping one queued since the listing
        # only costs its removal the unlink that finds no envelope).
        self._bare.intersection_update(ids)
        for queue_id in sorted(ids):
            try:
                with self._open_spool(queue_id) as f:
                    head = self._envelope_line(queue_id, f)[0]
                    size = os.fstat(f.fileno()).st_size
                accepted = self._decode(queue_id, head)
            except NoSuchEntry:
                continue
            except QueueError:
                pass
            else:
                # The message's data may not have reached the disk before a crash.
                if size == len(head) + 1 + accepted.size:
                    continue
            spool, env, _ = self._file_names(queue_id)
            with self._lock():
                try:
                    self._set_aside(queue_id, spool, env)
                except FileNotFoundError:
                    continue  # removed meanwhile
            ids.discard(queue_id)
            removed += 1
        for d, keep in ((self.env_dir, {f"{i}.json" for i in ids}), (self.tmp_dir, set())):
            for name in os.listdir(d):
                p = d / name
                if name in keep:
                    continue
                try:
                    if now - p.stat().st_mtime > older_than:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def _adopt_two_file_entries(self) -> None:
        """Entries left by versions that kept the message (msg/<id>) apart from the envelope
        (env/<id>.json) become spool files; the envelope stays as the entry's current one.
        A message without an envelope was never accepted and is dropped."""
        old = self.path / "msg"
        if not old.is_dir():
            return
        with self._lock():
            for name in os.listdir(old):
                if _valid_id(name):
                    self._adopt(name, old / name)
                else:
                    os.unlink(old / name)
            try:
                os.rmdir(old)
            except OSError:
                pass  # something new in it: the next start looks again

    def _adopt(self, queue_id: str, message: Path) -> None:
        spool, env, _ = self._file_names(queue_id)
        if os.path.exists(spool) or not os.path.exists(env):
            os.unlink(message)
            return
        try:
            with open(env, "rb") as f:
                accepted = self._decode(queue_id, f.read())
        except QueueError:
            self._set_aside(queue_id, message, env)
            return
        tmp = self._file_names(queue_id)[2]
        self.io.write_file(tmp, self._spool_bytes(accepted, message.read_bytes()), spool)
        os.unlink(message)

    def _set_aside(self, queue_id: str, spool_or_message: str | Path, env: str) -> None:
        """Into corrupt/, for a person to look at: the file as <id> and the envelope, if any,
        as <id>.json."""
        self._bare.discard(queue_id)
        corrupt = self.path / "corrupt"
        corrupt.mkdir(exist_ok=True, mode=0o700)
        os.rename(spool_or_message, corrupt / queue_id)
        if os.path.exists(env):
            os.rename(env, corrupt / f"{queue_id}.json")

    # -- internals -----------------------------------------------------------------------

    def _file_names(self, queue_id: str) -> tuple[str, str, str]:
        """(spool file, envelope, spool file in tmp/) as plain strings for the reactor's hot
        paths: pathlib's joins cost more than the rest of the path handling of a queued
        message."""
        if not _valid_id(queue_id):
            raise NoSuchEntry(queue_id)
        entries, env, tmp = self._dirs
        return f"{entries}/{queue_id}", f"{env}/{queue_id}.json", f"{tmp}/{queue_id}"

    def _write_envelope(self, entry: QueueEntry) -> None:
        """env/<id>.json: tmp → fsync → rename → fsync; a failed directory fsync keeps the new
        version (the previous one is gone with the rename)."""
        tmp = f"{self._dirs[2]}/{entry.id}.json.{os.getpid()}.{secrets.token_hex(4)}"
        self._bare.discard(entry.id)  # before: a failed write may still leave the new file
        self.io.write_file(tmp, self._encode(entry), self._env_path(entry.id), replacing=True)

    def _env_path(self, queue_id: str) -> Path:
        if not _valid_id(queue_id):
            raise NoSuchEntry(queue_id)
        return self.env_dir / f"{queue_id}.json"

    @staticmethod
    def _encode(entry: QueueEntry) -> bytes:
        # One line: JSON escapes the line ends inside strings.
        return _ENCODER.encode(entry.to_json()).encode()

    @classmethod
    def _spool_bytes(cls, entry: QueueEntry, data: bytes) -> bytes:
        return b"".join((cls._encode(entry), b"\n", data))

    @contextmanager
    def _lock(self):
        """The spool's lock, against the other processes that use it (the admin command) and
        this process's other threads.  The file is opened once and held: a use costs a flock
        and an unlock, not an open, a flock and a close (each a trip of a durable-pool thread
        out of the GIL and back).  Between processes it excludes as any flock does: the lock
        belongs to the open file description, and every other process opens its own (the
        descriptor is close-on-exec; nothing that uses the queue forks without exec).  Within
        this process all threads share the one description, on which a second flock would
        succeed at once; the thread lock, taken first, orders them instead.  The lock file is
        never removed, so the one held is the one everybody opens."""
        with self._thread_lock:
            fd = self._lock_fd
            if fd is None:
                fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._lock_fd = fd
                weakref.finalize(self, os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


__all__ = [
    "DELIVERED",
    "FAILED",
    "PENDING",
    "NoSuchEntry",
    "Queue",
    "QueueEntry",
    "QueueError",
    "QueuedRecipient",
]
