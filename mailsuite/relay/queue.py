"""The durable outbound spool: the only code that reads or writes files under the queue folder.

Layout (docs/internals.md): ``msg/<id>`` holds the message bytes and ``env/<id>.json`` the
envelope with per-recipient state; an entry exists when its envelope does.  ``enqueue`` writes
the message, then the envelope (tmp/ → rename), and only then waits for durability: the four
fsyncs (both files, both folders) are issued at once so the file system commits them in one
journal transaction (about 1 ms here instead of 12 ms one after the other).  Nothing is
acknowledged before they all return, so whatever a crash leaves half-written was never
accepted: an envelope without its message, one that does not parse, or one whose message is
shorter or longer than it records, is moved to ``corrupt/`` at the next start.  As in Postfix,
the disk is the truth and the runner's memory is a cache rebuilt from it at start.

Every method here blocks on the disk (callers on the reactor use ``deferToThread``), except
``enqueue_async`` and ``remove_many_async``, made for the reactor thread: they hand the file
work to the kernel (mailsuite.durable), and ``enqueue_async`` makes the envelope appear only
once the message is durable and the envelope written and fsynced.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import random
import secrets
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from mailsuite.durable import (
    create_file,
    discard,
    fsync_dir,
    unlink_async,
    write_in_order_async,
    write_new_file,
)

# Recipient states.  "failed" means a permanent failure whose bounce is still owed (dsn_sent
# False) or already sent; "delivered" likewise for NOTIFY=SUCCESS notices.
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

TRIGGER_NAME = "flush.trigger"
# Touched by an enqueue in a process without a runner (`mailsuite deliver`): "look for new
# entries", cheaper for the server than a full re-read.
NEW_TRIGGER_NAME = "new.trigger"

# fsyncs and unlinks issued side by side: each waits on the journal (about 1 ms here), and
# concurrent ones share a commit (see the module docstring); threads release the GIL meanwhile.
_IO_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="queue-io")


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


def _write_durable(tmp_dir: Path, final: Path, data: bytes) -> None:
    """tmp → fsync → rename → fsync dir: the rename is the commit point."""
    tmp = tmp_dir / f"{final.name}.{os.getpid()}.{secrets.token_hex(4)}"
    write_new_file(tmp, data)
    os.rename(tmp, final)
    fsync_dir(final.parent)


def _fsync_together(paths: list[Path], fds: list[int]) -> None:
    """fsync the open files and the folders concurrently; raise the first error."""
    opened = []
    try:
        for p in paths:
            opened.append(os.open(p, os.O_RDONLY | os.O_DIRECTORY))
        for future in [_IO_POOL.submit(os.fsync, fd) for fd in fds + opened]:
            future.result()
    finally:
        for fd in opened:
            os.close(fd)


def new_queue_id() -> str:
    """Sortable by arrival (microsecond time in hex) and unique across processes."""
    return f"{time.time_ns() // 1000:014X}{random.getrandbits(24):06X}"


def _valid_id(queue_id: str) -> bool:
    return bool(queue_id) and queue_id.isalnum() and len(queue_id) <= 64


class Queue:
    """The spool at ``path``; safe to use from the server and the admin command at once."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.msg_dir = self.path / "msg"
        self.env_dir = self.path / "env"
        self.tmp_dir = self.path / "tmp"
        self._dirs = tuple(os.fspath(d) for d in (self.msg_dir, self.env_dir, self.tmp_dir))
        self._lock_path = os.fspath(self.path / "lock")
        for d in (self.path, self.msg_dir, self.env_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.trigger_path = self.path / TRIGGER_NAME
        self.new_trigger_path = self.path / NEW_TRIGGER_NAME
        # Called as cb(entry, data) from the enqueueing thread once an entry is durable, so
        # the runner in the same process starts on it at once, without reading it back.
        self._listeners: list = []

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
        """Store a message durably and return its id; blocking (fsyncs twice)."""
        entry = self._new_entry(
            mail_from, recipients, data, dsn_ret, dsn_envid, is_bounce, next_attempt
        )
        fds = self._stage(entry, data)
        try:
            _fsync_together([self.msg_dir, self.env_dir], fds)
        except BaseException:
            self._unstage(entry)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        self._announce(entry, data)
        return entry.id

    def enqueue_async(
        self,
        mail_from: str,
        recipients: Iterable[Any],
        data: bytes,
        dsn_ret: str | None = None,
        dsn_envid: str | None = None,
    ) -> defer.Deferred:
        """enqueue() called on the reactor thread: Deferred[id], without blocking it
        (mailsuite.durable): the message is written and fsynced with msg/, then the envelope in
        tmp/, renamed into env/ (the entry exists from here) and env/ fsynced.  On failure
        nothing is left."""
        try:
            entry = self._new_entry(mail_from, recipients, data, dsn_ret, dsn_envid, False, None)
        except QueueError:
            return defer.fail()
        msg, env, tmp = self._file_names(entry.id)
        written = write_in_order_async([(msg, bytes(data), None), (tmp, self._encode(entry), env)])

        def announce(_):
            self._announce(entry, data)
            return entry.id

        return written.addCallback(announce)

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

    def _stage(self, entry: QueueEntry, data: bytes) -> list[int]:
        """Write the message, then the envelope (tmp/ → rename: the entry now exists); returns
        both descriptors, not yet fsynced.  On error nothing is left."""
        msg, env, tmp = self._file_names(entry.id)
        fds: list[int] = []
        try:
            fds.append(create_file(msg, bytes(data)))
            fds.append(create_file(tmp, self._encode(entry)))
            os.rename(tmp, env)
        except BaseException:
            for fd in fds:
                os.close(fd)
            self._unstage(entry)
            raise
        return fds

    def _unstage(self, entry: QueueEntry) -> None:
        msg, env, tmp = self._file_names(entry.id)
        for path in (env, msg, tmp):
            discard(path)

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
            _write_durable(self.tmp_dir, self._env_path(entry.id), self._encode(entry))
            return "saved"

    def remove(self, queue_id: str) -> bool:
        """Delete an entry, envelope first so a crash half-way leaves an orphan message only."""
        return self.remove_many([queue_id]) == 1

    def remove_many(self, queue_ids: list[str]) -> int:
        """Delete entries (one lock for the batch: the runner removes finished entries in
        batches); returns how many envelopes existed.

        No fsync: a removal lost in a crash means one more delivery, never a lost message
        (Postfix does not sync deletions either).
        """
        with self._lock():
            existed = sum(_unlink_quietly(self._env_path(q)) for q in queue_ids)
        # Without its envelope the message file is nobody's; it can go outside the lock.
        for q in queue_ids:
            _unlink_quietly(self.msg_dir / q)
        return existed

    def remove_many_async(self, queue_ids: list[str]) -> defer.Deferred:
        """remove_many() from the reactor thread: Deferred[int].  The queue lock is taken
        without waiting and the unlinks go to the kernel (durable.unlink_async), so no worker
        thread contends with the reactor for the GIL after each unlink; while `mailsuite queue`
        holds the lock, remove_many() waits for it in a thread as before."""
        names = [self._file_names(q) for q in queue_ids]
        envs = [env for _, env, _ in names]
        msgs = [msg for msg, _, _ in names]
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return threads.deferToThread(self.remove_many, queue_ids)

        def removed(results: list[int]) -> int:
            os.close(fd)
            return sum(1 for r in results[: len(envs)] if r == 0)

        def failed(failure):
            os.close(fd)
            return failure

        # Envelopes first, as remove_many: a crash half-way leaves orphan messages only.
        return unlink_async(envs + msgs).addCallbacks(removed, failed)

    def modify(self, queue_id: str, change) -> QueueEntry:
        """Load, apply ``change(entry)`` and save under the lock (admin retry/bounce)."""
        with self._lock():
            entry = self.load(queue_id)
            change(entry)
            entry.generation += 1
            _write_durable(self.tmp_dir, self._env_path(entry.id), self._encode(entry))
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
        """Ids of complete entries, oldest first."""
        out = []
        for name in os.listdir(self.env_dir):
            if name.endswith(".json") and _valid_id(name[:-5]):
                out.append(name[:-5])
        out.sort()
        return out

    def load(self, queue_id: str) -> QueueEntry:
        if not _valid_id(queue_id):
            raise NoSuchEntry(queue_id)
        try:
            raw = self._env_path(queue_id).read_bytes()
        except FileNotFoundError:
            raise NoSuchEntry(queue_id) from None
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
        try:
            return (self.msg_dir / queue_id).read_bytes()
        except FileNotFoundError:
            raise NoSuchEntry(queue_id) from None

    def message_path(self, queue_id: str) -> Path:
        return self.msg_dir / queue_id

    def clean_orphans(self, older_than: float = 3600.0) -> int:
        """Remove message files without an envelope and stale tmp files left by a crash, and
        move envelopes without a message or that do not parse to ``corrupt/`` (they were
        never acknowledged, see the module docstring)."""
        now = time.time()
        removed = 0
        envs = set(self.ids())
        for queue_id in sorted(envs):
            try:
                stored = (self.msg_dir / queue_id).stat().st_size
            except FileNotFoundError:
                stored = None
            bad = stored is None
            if not bad:
                try:
                    entry = self.load(queue_id)
                except NoSuchEntry:
                    continue
                except QueueError:
                    bad = True
                else:
                    # The message's data may not have reached the disk before a crash.
                    bad = bool(entry.size) and stored != entry.size
            if bad:
                with self._lock():
                    corrupt = self.path / "corrupt"
                    corrupt.mkdir(exist_ok=True)
                    try:
                        os.rename(self._env_path(queue_id), corrupt / f"{queue_id}.json")
                    except FileNotFoundError:
                        continue
                    for extra in (self.msg_dir / queue_id,):
                        if extra.exists():
                            os.rename(extra, corrupt / queue_id)
                envs.discard(queue_id)
                removed += 1
        for d, keep in ((self.msg_dir, envs), (self.tmp_dir, set())):
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

    # -- internals -----------------------------------------------------------------------

    def _file_names(self, queue_id: str) -> tuple[str, str, str]:
        """(message, envelope, envelope in tmp/) as plain strings for the reactor's hot paths:
        pathlib's joins cost more than the rest of the path handling of a queued message."""
        if not _valid_id(queue_id):
            raise NoSuchEntry(queue_id)
        msg, env, tmp = self._dirs
        return f"{msg}/{queue_id}", f"{env}/{queue_id}.json", f"{tmp}/{queue_id}.json"

    def _env_path(self, queue_id: str) -> Path:
        if not _valid_id(queue_id):
            raise NoSuchEntry(queue_id)
        return self.env_dir / f"{queue_id}.json"

    @staticmethod
    def _encode(entry: QueueEntry) -> bytes:
        return json.dumps(entry.to_json(), separators=(",", ":")).encode()

    @contextmanager
    def _lock(self):
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


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
