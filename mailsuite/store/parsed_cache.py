"""Parsed-message cache: each message's header block, envelope and MIME tree, parsed once.

Why: what mail clients ask most (ENVELOPE, BODYSTRUCTURE, header fields, SORT and SEARCH on
headers) needs the header and the MIME structure, and parsing the same file again for every
client (and every reconnect) is wasted work.  Results are kept in one SQLite file per user
Maildir (`mailsuite-parsed.sqlite` beside `dovecot-uidlist`) and in a bounded in-memory LRU,
so the second client to ask pays neither the file read nor the parse.

What is kept is protocol-neutral: the header in CRLF form, and the envelope (RFC 5322 §3.6
fields as parsed values) and the tree as `mailsuite.message.codec` lays them out; each
protocol formats from those.  The envelope is kept apart from the header it comes from because
parsing its addresses costs more than everything else of answering from the cache.  The layout's
version is the message package's (`codec.FORMAT_VERSION`): rows of another version are
dropped when the file is opened.

Beside them, a protocol may keep what it rendered from them (`keep_rendered` / `rendered`),
under names of its own that carry its formatting version: after a restart, the first client to
page through a mailbox then costs one query per batch instead of loading and formatting every
header again.  Those rows are the protocol's business; a change of its formatting is a new
name, and the cache's own layout never depends on them.

A Maildir message file never changes content under its key (only its flag suffix), and keys
are unique names (copies get new ones), so rows are keyed by the message key alone and stay
valid across folder renames and MOVE; the stored size guards against a reused name.  Rows of
expunged messages are removed by `discard()` / `prune()` (a stale row is harmless: it is only
found under a key that no longer exists).

Usage (through the store: `folder.parsed_cache`, `folder.parsed_loader(...)`):

    cache = ParsedCache.for_maildir(maildir_root)      # one shared instance per Maildir
    loader = cache.loader(folder.read)                 # msg -> CachedContent
    cache.prefetch(msgs)                               # optional: one query for a batch
    content = loader(msg)  # .header() .fields() .envelope() .tree()  (from the cache)
                           # .raw_bytes() .wire()  (read the file)
    cache.flush()                                      # write pending rows (end of a command)
    cache.add_message(key, raw)                        # parse and keep everything now
    cache.add(key, raw, {"header", "envelope"})        # parse and keep only these columns
    cache.keep_rendered([(name, key, size, value)])    # a protocol's rendered items (flush)
    cache.rendered(name, msgs) -> {key: value}         # those of msgs kept under name

Memory: entries of all mailboxes share one process-wide LRU with a byte budget
(`MemoryLRU`, 32 MiB by default; pass `memory=` for a private one), and each SQLite file keeps
a 256 KiB page cache, so many open mailboxes do not add up.

Thread safety: every method takes one lock, so a FETCH run in a worker thread and another
session on the reactor can share the instance.  The SQLite file is a cache: it is written
without fsync and rebuilt from scratch if it is corrupt.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from mailsuite.durable.modes import create_private_file
from mailsuite.message import codec
from mailsuite.message.content import MessageContent
from mailsuite.message.envelope import Envelope, envelope
from mailsuite.message.headers import parse_fields
from mailsuite.message.structure import MimePart

__all__ = ["ParsedCache", "CachedContent", "MemoryLRU", "CACHE_NAME"]

CACHE_NAME = "mailsuite-parsed.sqlite"
# The file's user_version: the message package's layout version, offset so that it differs
# from every version of files that held other columns.
LAYOUT = 0x100 + codec.FORMAT_VERSION
_COLUMNS = ("header", "structure", "envelope")
_FLUSH_EVERY = 512  # pending rows
_FLUSH_SECONDS = 2.0


class _Entry:
    __slots__ = ("size", "header", "structure", "envelope")

    def __init__(self, size, header=None, structure=None, envelope=None):
        self.size = size
        self.header = header  # the top-level header, CRLF line ends, blank line included
        self.structure = structure  # codec.dump_tree() of the MIME tree
        self.envelope = envelope  # codec.dump_envelope() of the header's envelope


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
        self._pending_rendered: list[tuple[str, str, int, bytes]] = []
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

    def is_shared(self) -> bool:
        """Still the process-wide instance for its Maildir (not closed since)."""
        return self._instances.get(self._owner) is self

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
        try:
            create_private_file(self.path)
        except OSError:
            pass  # sqlite3 says what is wrong, as the caller expects
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-256")  # 256 KiB per mailbox: memory stays flat
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != LAYOUT:
            db.execute("DROP TABLE IF EXISTS parsed")
            db.execute("DROP TABLE IF EXISTS rendered")
            db.execute(f"PRAGMA user_version={LAYOUT}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS parsed (key TEXT PRIMARY KEY, size INTEGER,"
            " header BLOB, structure BLOB, envelope BLOB) WITHOUT ROWID"
        )
        # Looked up by name and a batch of keys: the name leads the key.
        db.execute(
            "CREATE TABLE IF NOT EXISTS rendered (name TEXT, key TEXT, size INTEGER,"
            " value BLOB, PRIMARY KEY (name, key)) WITHOUT ROWID"
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
                        "SELECT size, header, structure, envelope FROM parsed WHERE key=?",
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
            for chunk, marks in _in_chunks(keys):
                q = (
                    "SELECT key, size, header, structure, envelope FROM parsed"
                    f" WHERE key IN ({marks})"
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

    def rendered(self, name: str, msgs: Iterable) -> dict[str, bytes]:
        """{key: value} of what was kept under `name` for those of `msgs` (objects with .key
        and .size) whose row matches their size; few queries for a batch."""
        found: dict[str, bytes] = {}
        with self._lock:
            if self._db is None:
                return found
            sizes = {m.key: m.size for m in msgs}
            keys = list(sizes)
            for chunk, marks in _in_chunks(keys):
                q = f"SELECT key, size, value FROM rendered WHERE name=? AND key IN ({marks})"
                try:
                    rows = self._db.execute(q, [name, *chunk]).fetchall()
                except sqlite3.Error:
                    return found
                for key, size, value in rows:
                    if sizes.get(key) == size:
                        found[key] = value
        return found

    def keep_rendered(self, rows: Iterable[tuple[str, str, int, bytes]]) -> None:
        """Keep a protocol's rendered forms of messages' items, rows of (name, key, size,
        value), written at the next flush."""
        with self._lock:
            if self._db is None:
                return
            self._pending_rendered.extend(rows)

    @property
    def has_pending(self) -> bool:
        """Rows wait to be written: only then is a flush worth a hand-over to a worker."""
        return bool(self._pending) or bool(self._pending_rendered)

    def flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            if self._pending_rendered:
                self._flush_rendered()
            if not self._pending or self._db is None:
                self._pending.clear()
                return
            rows = [
                (k, e.size, e.header, e.structure, e.envelope) for k, e in self._pending.items()
            ]
            self._pending.clear()
            # Upsert that keeps columns already stored: an entry evicted from memory and then
            # extended with one new column must not erase the others.
            self._write(
                "INSERT INTO parsed VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
                " header=CASE WHEN size=excluded.size THEN coalesce(excluded.header, header)"
                " ELSE excluded.header END,"
                " structure=CASE WHEN size=excluded.size"
                " THEN coalesce(excluded.structure, structure) ELSE excluded.structure END,"
                " envelope=CASE WHEN size=excluded.size"
                " THEN coalesce(excluded.envelope, envelope) ELSE excluded.envelope END,"
                " size=excluded.size",
                rows,
            )

    def _flush_rendered(self) -> None:
        rows, self._pending_rendered = self._pending_rendered, []
        if self._db is not None:
            self._write("INSERT OR REPLACE INTO rendered VALUES (?, ?, ?, ?)", rows)

    def _write(self, statement: str, rows: list) -> None:
        """`statement` for every row in one transaction; a failure leaves the file as it was
        (it is a cache: the rows are computed again when next needed)."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany(statement, rows)
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
                    # Keyed by name first: one pass over the table per chunk of keys.
                    for chunk, marks in _in_chunks(keys):
                        self._db.execute(f"DELETE FROM rendered WHERE key IN ({marks})", chunk)
                except sqlite3.Error:
                    pass

    def prune(self, live_keys: Iterable[str]) -> int:
        """Delete every row whose key is not in `live_keys` (all folders of the Maildir)."""
        live = set(live_keys)
        with self._lock:
            self.flush()
            if self._db is None:
                return 0
            stored = self._db.execute("SELECT key FROM parsed UNION SELECT key FROM rendered")
            dead = [k for (k,) in stored if k not in live]
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
        """Parse and keep everything of a message (its bytes are in hand already)."""
        self.add(key, raw, _COLUMNS)

    def add(self, key: str, raw: bytes, columns: Iterable[str]) -> None:
        """Keep the header and whichever of "envelope", "structure" `columns` names, for a
        message whose bytes are in hand: a batch is made ready in a worker thread this way,
        so that the reactor parses nothing when it renders it."""
        columns = set(columns)
        content = MessageContent(raw)
        values = {"header": content.header()}
        if "envelope" in columns:
            values["envelope"] = codec.dump_envelope(content.envelope())
        if "structure" in columns:
            values["structure"] = codec.dump_tree(content.tree())
        self.update(key, len(raw), **values)

    def missing(self, msg, columns: Iterable[str]) -> bool:
        """Whether any of `columns` ("header", "envelope", "structure") is unknown for `msg`."""
        e = self.get(msg.key, msg.size)
        return e is None or any(getattr(e, c) is None for c in columns)

    # -- content objects ----------------------------------------------------------------------

    def loader(self, read_raw: Callable, preloaded: dict | None = None) -> Callable:
        """`msg -> CachedContent`; read_raw(msg) returns the stored bytes (e.g. Folder.read);
        `preloaded` maps UID to bytes already read."""
        pre = preloaded if preloaded is not None else {}

        def load(msg) -> CachedContent:
            return CachedContent(self, msg, read_raw, pre.get(msg.uid))

        return load


class CachedContent:
    """The interface of `mailsuite.message.content.MessageContent`, answered from the cache
    when possible.

    The message file is read only for what the cache cannot answer (body sections, SEARCH
    BODY/TEXT); whatever is parsed on the way is stored for the next client.
    """

    __slots__ = (
        "cache",
        "msg",
        "read_raw",
        "_entry",
        "_looked",
        "_content",
        "_fields",
        "_tree",
        "_env",
    )

    def __init__(self, cache: ParsedCache, msg, read_raw: Callable, raw: bytes | None = None):
        self.cache = cache
        self.msg = msg
        self.read_raw = read_raw
        self._entry: _Entry | None = None
        self._looked = False  # the cache is asked only when a cached column is wanted
        # Bytes already in hand (read ahead in a worker thread) make the header free; the
        # cache is then only consulted for the tree.
        self._content = MessageContent(raw) if raw is not None else None
        self._fields: list[tuple[bytes, bytes]] | None = None
        self._tree: MimePart | None = None
        self._env: Envelope | None = None

    def _lookup(self) -> _Entry | None:
        if not self._looked:
            self._looked = True
            self._entry = self.cache.get(self.msg.key, self.msg.size)
        return self._entry

    def _full(self) -> MessageContent:
        if self._content is None:
            self._content = MessageContent(self.read_raw(self.msg))
        return self._content

    def header(self) -> bytes:
        if self._content is not None:
            return self._content.header()  # already read: cheaper than a cache query
        e = self._lookup()
        if e is not None and e.header is not None:
            return e.header
        header = self._full().header()
        self.cache.update(self.msg.key, self.msg.size, header=header)
        return header

    def fields(self) -> list[tuple[bytes, bytes]]:
        if self._fields is None:
            self._fields = parse_fields(self.header())
        return self._fields

    def envelope(self) -> Envelope:
        if self._env is None:
            if self._content is not None and not self._looked:
                # Bytes in hand (read ahead for body items) and the cache not asked yet:
                # parse them rather than query the cache's file for this alone.
                self._env = self._content.envelope()
                return self._env
            e = self._lookup()
            if e is not None and e.envelope is not None:
                try:
                    self._env = codec.load_envelope(e.envelope)
                except codec.CorruptEnvelope:
                    pass
            if self._env is None:
                self._env = envelope(self.fields())
                self.cache.update(
                    self.msg.key,
                    self.msg.size,
                    header=self.header(),
                    envelope=codec.dump_envelope(self._env),
                )
        return self._env

    def tree(self) -> MimePart:
        if self._tree is None:
            e = self._lookup()
            if e is not None and e.structure is not None:
                try:
                    self._tree = codec.load_tree(e.structure)
                except codec.CorruptTree:
                    pass
            if self._tree is None:
                full = self._full()
                self._tree = full.tree()
                self.cache.update(
                    self.msg.key,
                    self.msg.size,
                    header=full.header(),
                    structure=codec.dump_tree(self._tree),
                )
        return self._tree

    def raw_bytes(self) -> bytes:
        return self._full().raw_bytes()

    def wire(self) -> bytes:
        return self._full().wire()


def _in_chunks(keys: list[str]):
    """(chunk, its "?,?,..." placeholders) for `key IN (...)` over `keys`, a few hundred at a
    time: SQLite bounds the parameters of one statement."""
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        yield chunk, ",".join("?" * len(chunk))
