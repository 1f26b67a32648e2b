"""Parsed-message cache: header block, ENVELOPE and BODY/BODYSTRUCTURE computed once per message.

Why: FETCH of ENVELOPE/BODYSTRUCTURE/header fields is what mail clients do most; parsing the
same file again for every client (and every reconnect) is wasted work.  Results are kept in
one SQLite file per user Maildir (`mailsuite-parsed.sqlite` beside `dovecot-uidlist`) and in a
bounded in-memory LRU, so the second client to ask pays neither the file read nor the parse.

A Maildir message file never changes content under its key (only its flag suffix), and keys
are unique names (copies get new ones), so rows are keyed by the message key alone and stay
valid across folder renames and MOVE; the stored size guards against a reused name.  Rows of
expunged messages are removed by `discard()` / `prune()` (a stale row is harmless: it is only
found under a key that no longer exists).

Usage (IMAP FETCH/SEARCH/SORT/THREAD):

    cache = ParsedCache.for_maildir(mailbox.path)     # one shared instance per Maildir
    loader = cache.loader(folder.read)                 # msg -> CachedContent
    cache.prefetch(msgs)                               # optional: one query for a batch
    content = loader(msg)  # .header() .fields() .envelope_bytes() .bodystructure_bytes(ext)
                           # .raw_bytes() .wire() .tree()  (the last three read the file)
    cache.flush()                                      # write pending rows (end of a command)
    cache.add_message(key, raw)                        # optional: warm at APPEND/delivery

Memory: entries of all mailboxes share one process-wide LRU with a byte budget
(`MemoryLRU`, 32 MiB by default; pass `memory=` for a private one), and each SQLite file keeps
a 256 KiB page cache, so many open mailboxes do not add up.

Thread safety: every method takes one lock, so a FETCH run in a worker thread and another
session on the reactor can share the instance.  The SQLite file is a cache: it is written
without fsync and rebuilt from scratch if it is corrupt or of an older format
(FORMAT_VERSION is bumped whenever mime.py changes what it produces).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from mailsuite.imap import mime

__all__ = [
    "ParsedCache",
    "CachedContent",
    "MemoryLRU",
    "CACHE_NAME",
    "folder_loader",
    "maildir_root_of",
]

CACHE_NAME = "mailsuite-parsed.sqlite"
# Bump when mime.py changes what it produces, so old rows are recomputed.
FORMAT_VERSION = 3
_COLUMNS = ("header", "envelope", "bodystructure", "body")
_FLUSH_EVERY = 512  # pending rows
_FLUSH_SECONDS = 2.0


class _Entry:
    __slots__ = ("size", "header", "envelope", "bodystructure", "body")

    def __init__(self, size, header=None, envelope=None, bodystructure=None, body=None):
        self.size = size
        self.header = header
        self.envelope = envelope
        self.bodystructure = bodystructure
        self.body = body


class MemoryLRU:
    """Entries of every ParsedCache of the process under one byte budget: a server with a
    thousand mailboxes open keeps the same bounded memory as one with a single mailbox."""

    def __init__(self, budget_bytes: int = 32 * 1024 * 1024):
        self.budget = budget_bytes
        self.used = 0
        self._items: OrderedDict[tuple[str, str], tuple[_Entry, int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(entry: _Entry) -> int:
        return 160 + sum(len(getattr(entry, c) or b"") for c in _COLUMNS)

    def get(self, owner: str, key: str) -> _Entry | None:
        with self._lock:
            item = self._items.get((owner, key))
            if item is None:
                return None
            self._items.move_to_end((owner, key))
            return item[0]

    def put(self, owner: str, key: str, entry: _Entry) -> None:
        size = self._size(entry)
        with self._lock:
            old = self._items.pop((owner, key), None)
            if old is not None:
                self.used -= old[1]
            self._items[(owner, key)] = (entry, size)
            self.used += size
            while self.used > self.budget and self._items:
                _, (_, gone) = self._items.popitem(last=False)
                self.used -= gone

    def pop(self, owner: str, key: str) -> None:
        with self._lock:
            old = self._items.pop((owner, key), None)
            if old is not None:
                self.used -= old[1]

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0


_SHARED_MEMORY = MemoryLRU()


class ParsedCache:
    _instances: dict[str, ParsedCache] = {}
    _instances_lock = threading.Lock()

    def __init__(self, path: Path | str, memory: MemoryLRU | None = None):
        self.path = Path(path)
        self._owner = str(self.path)
        self._memory = memory if memory is not None else _SHARED_MEMORY
        self._lock = threading.RLock()
        self._pending: dict[str, _Entry] = {}
        self._last_flush = time.monotonic()
        self._db: sqlite3.Connection | None = None
        self.hits = 0
        self.misses = 0
        self._open()

    @classmethod
    def for_maildir(cls, maildir: Path | str) -> ParsedCache:
        """The process-wide instance for a user's Maildir root."""
        path = str(Path(maildir) / CACHE_NAME)
        with cls._instances_lock:
            inst = cls._instances.get(path)
            if inst is None:
                inst = cls._instances[path] = cls(path)
            return inst

    # -- database ---------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError:
            # A corrupt cache is thrown away; it holds nothing that cannot be recomputed.
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            try:
                self._db = self._connect()
            except sqlite3.Error:
                self._db = None  # memory-only operation

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-256")  # 256 KiB per mailbox: memory stays flat
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != FORMAT_VERSION:
            db.execute("DROP TABLE IF EXISTS parsed")
            db.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS parsed (key TEXT PRIMARY KEY, size INTEGER,"
            " header BLOB, envelope BLOB, bodystructure BLOB, body BLOB) WITHOUT ROWID"
        )
        return db

    def close(self) -> None:
        with self._lock:
            self.flush()
            if self._db is not None:
                self._db.close()
                self._db = None
        with self._instances_lock:
            if self._instances.get(str(self.path)) is self:
                del self._instances[str(self.path)]

    # -- lookups ----------------------------------------------------------------------------

    def _remember(self, key: str, entry: _Entry) -> None:
        self._memory.put(self._owner, key, entry)

    def _recall(self, key: str) -> _Entry | None:
        return self._memory.get(self._owner, key)

    def get(self, key: str, size: int | None = None) -> _Entry | None:
        with self._lock:
            entry = self._pending.get(key) or self._recall(key)
            if entry is None and self._db is not None:
                try:
                    row = self._db.execute(
                        "SELECT size, header, envelope, bodystructure, body FROM parsed"
                        " WHERE key=?",
                        (key,),
                    ).fetchone()
                except sqlite3.Error:
                    row = None
                if row is not None:
                    entry = _Entry(*row)
                    self._remember(key, entry)
            if entry is not None and size is not None and entry.size != size:
                entry = None
            if entry is None:
                self.misses += 1
            else:
                self.hits += 1
            return entry

    def prefetch(self, msgs: Iterable) -> None:
        """Load the rows of many messages (objects with .key) with few queries."""
        with self._lock:
            if self._db is None:
                return
            keys = [m.key for m in msgs if self._recall(m.key) is None]
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = (
                    "SELECT key, size, header, envelope, bodystructure, body FROM parsed"
                    " WHERE key IN (" + ",".join("?" * len(chunk)) + ")"
                )
                try:
                    rows = self._db.execute(q, chunk).fetchall()
                except sqlite3.Error:
                    return
                for row in rows:
                    self._remember(row[0], _Entry(*row[1:]))

    def update(self, key: str, size: int, **columns: bytes) -> None:
        """Merge computed columns into the entry for `key` (written at the next flush)."""
        with self._lock:
            entry = self._pending.get(key) or self._recall(key)
            if entry is None or entry.size != size:
                entry = _Entry(size)
            for name, value in columns.items():
                setattr(entry, name, value)
            self._remember(key, entry)
            self._pending[key] = entry
            if (
                len(self._pending) >= _FLUSH_EVERY
                or time.monotonic() - self._last_flush > _FLUSH_SECONDS
            ):
                self.flush()

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            if not self._pending or self._db is None:
                self._pending.clear()
                return
            rows = [
                (k, e.size, e.header, e.envelope, e.bodystructure, e.body)
                for k, e in self._pending.items()
            ]
            self._pending.clear()
            try:
                self._db.execute("BEGIN")
                # Upsert that keeps columns already stored: an entry evicted from memory and
                # then extended with one new column must not erase the others.
                self._db.executemany(
                    "INSERT INTO parsed VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                    " header=CASE WHEN size=excluded.size THEN coalesce(excluded.header, header)"
                    " ELSE excluded.header END,"
                    " envelope=CASE WHEN size=excluded.size THEN coalesce(excluded.envelope, envelope)"
                    " ELSE excluded.envelope END,"
                    " bodystructure=CASE WHEN size=excluded.size THEN coalesce(excluded.bodystructure, bodystructure)"
                    " ELSE excluded.bodystructure END,"
                    " body=CASE WHEN size=excluded.size THEN coalesce(excluded.body, body)"
                    " ELSE excluded.body END, size=excluded.size",
                    rows,
                )
                self._db.execute("COMMIT")
            except sqlite3.Error:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass

    def discard(self, keys: Iterable[str]) -> None:
        """Forget expunged messages."""
        with self._lock:
            keys = list(keys)
            for k in keys:
                self._memory.pop(self._owner, k)
                self._pending.pop(k, None)
            if self._db is not None and keys:
                try:
                    self._db.executemany("DELETE FROM parsed WHERE key=?", [(k,) for k in keys])
                except sqlite3.Error:
                    pass

    def prune(self, live_keys: Iterable[str]) -> int:
        """Delete every row whose key is not in `live_keys` (all folders of the Maildir)."""
        live = set(live_keys)
        with self._lock:
            self.flush()
            if self._db is None:
                return 0
            dead = [k for (k,) in self._db.execute("SELECT key FROM parsed") if k not in live]
        self.discard(dead)
        return len(dead)

    def alias(self, old_key: str, new_key: str, size: int) -> None:
        """A copy under a new key has the same content: reuse what is known (COPY/MOVE)."""
        entry = self.get(old_key, size)
        if entry is not None:
            self.update(
                new_key,
                size,
                **{c: getattr(entry, c) for c in _COLUMNS if getattr(entry, c) is not None},
            )

    def add_message(self, key: str, raw: bytes) -> None:
        """Compute everything for a new message (APPEND/delivery), so no client pays later."""
        content = mime.MessageContent(raw)
        self.update(
            key,
            len(raw),
            header=content.header(),
            envelope=content.envelope_bytes(),
            bodystructure=content.bodystructure_bytes(True),
            body=content.bodystructure_bytes(False),
        )

    # -- content objects ----------------------------------------------------------------------

    def loader(self, read_raw: Callable, preloaded: dict | None = None) -> Callable:
        """`msg -> CachedContent`; read_raw(msg) returns the stored bytes (e.g. Folder.read);
        `preloaded` maps UID to bytes already read."""
        pre = preloaded if preloaded is not None else {}

        def load(msg) -> CachedContent:
            return CachedContent(self, msg, read_raw, pre.get(msg.uid))

        return load


class CachedContent:
    """The content interface of `mime.MessageContent`, answered from the cache when possible.

    The message file is read only for what the cache cannot answer (body sections, SEARCH
    BODY/TEXT); whatever is computed on the way is stored for the next client.
    """

    __slots__ = ("cache", "msg", "read_raw", "_entry", "_looked", "_content", "_fields")

    def __init__(self, cache: ParsedCache, msg, read_raw: Callable, raw: bytes | None = None):
        self.cache = cache
        self.msg = msg
        self.read_raw = read_raw
        self._entry: _Entry | None = None
        self._looked = False  # the cache is asked only when a cached column is wanted
        # Bytes already in hand (read ahead in a worker thread) make the header free; the
        # cache is then only consulted for the parsed structures.
        self._content = mime.MessageContent(raw) if raw is not None else None
        self._fields = None

    def _lookup(self) -> _Entry | None:
        if not self._looked:
            self._looked = True
            self._entry = self.cache.get(self.msg.key, self.msg.size)
        return self._entry

    def _full(self) -> mime.MessageContent:
        if self._content is None:
            self._content = mime.MessageContent(self.read_raw(self.msg))
        return self._content

    def _cached(self, column: str, compute: Callable[[], bytes]) -> bytes:
        e = self._lookup()
        value = getattr(e, column) if e is not None else None
        if value is None:
            value = compute()
            self.cache.update(self.msg.key, self.msg.size, **{column: value})
            self._entry = self.cache.get(self.msg.key, self.msg.size)
        return value

    def header(self) -> bytes:
        if self._content is not None:
            return self._content.header()  # already read: cheaper than a cache query
        return self._cached("header", lambda: self._full().header())

    def fields(self) -> list[tuple[bytes, bytes]]:
        if self._fields is None:
            self._fields = mime.parse_fields(self.header())
        return self._fields

    def envelope_bytes(self) -> bytes:
        return self._cached("envelope", lambda: mime.envelope_bytes(self.fields()))

    def bodystructure_bytes(self, extensible: bool = True) -> bytes:
        column = "bodystructure" if extensible else "body"
        e = self._lookup()
        value = getattr(e, column) if e is not None else None
        if value is None:
            # One parse gives both forms; store both so BODY after BODYSTRUCTURE is free.
            full = self._full()
            bs, body = full.bodystructure_bytes(True), full.bodystructure_bytes(False)
            self.cache.update(self.msg.key, self.msg.size, bodystructure=bs, body=body)
            self._entry = self.cache.get(self.msg.key, self.msg.size)
            value = bs if extensible else body
        return value

    def raw_bytes(self) -> bytes:
        return self._full().raw_bytes()

    def wire(self) -> bytes:
        return self._full().wire()

    def tree(self) -> mime.MimePart:
        return self._full().tree()


def maildir_root_of(folder) -> Path:
    """The user Maildir holding a store Folder (INBOX is the root; Maildir++ folders are
    `.Name` directories directly below it)."""
    path = Path(folder.path)
    return path.parent if path.name.startswith(".") else path


def folder_loader(folder, preloaded: dict | None = None) -> Callable:
    """`msg -> CachedContent` for a store Folder, usable in a worker thread.

    `preloaded` maps UID to raw bytes already read; other files are read by path (no index
    refresh, so it is thread-safe); a vanished file reads as empty.
    """
    cache = ParsedCache.for_maildir(maildir_root_of(folder))

    def read_raw(msg) -> bytes:
        try:
            with open(folder.message_path(msg), "rb") as f:
                return f.read()
        except OSError:
            return b""

    return cache.loader(read_raw, preloaded)
