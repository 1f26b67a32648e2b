"""One account's filter data, in `mailsuite-junk.sqlite` beside its Maildir's folders: word
counts, which messages were learned as what, the people the user writes to, and the user's
allow and block lists.  The same file layout holds the server-wide lists
(`<data_dir>/junk-lists.sqlite`, lists only).

Every method blocks (SQLite): the server calls them in durable-I/O jobs, the admin command in
its own thread, never on the reactor.  What a delivery reads is asked in as few statements as
possible, each answering in one row (`evidence`, `counts`): the sqlite3 module lets go of the
GIL for every row it steps to, and a delivery thread that lets go of it while the reactor or
another delivery wants it waits to get it back, a hundred times per message when each of its
words was a row.  An account's word counts are also held in memory while its table is small
(WORDS_IN_MEMORY, RESIDENT_WORDS for the process): its lessons update them as they update the
file, and a write by another connection (the admin command's retrain) is seen through SQLite's
data_version, which makes them be read again.  The file is made by the first write (a lesson,
a list entry, a correspondent); SQLite's locking lets the admin command and the server share
it, a lock per file serialises this process's threads.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from mailsuite.durable.modes import create_private_file
from mailsuite.message.headers import first_value, parse_fields
from mailsuite.message.lines import header_block

MODEL_FILE = "mailsuite-junk.sqlite"
JUNK, HAM = "junk", "ham"
ALLOW, BLOCK = "allow", "block"
# An account's word counts are held in memory while it has at most this many words (about
# 150 bytes each), and all accounts together at most RESIDENT_WORDS; beyond, each delivery
# asks the file.
WORDS_IN_MEMORY = 50_000
RESIDENT_WORDS = 250_000
# The tokens and addresses go in as one JSON array each (one statement, prepared once, for any
# number), the counts come back as one JSON object (one row).
_COUNTS = (
    "SELECT json_group_object(token, json_array(junk, ham)) FROM words"
    " WHERE token IN (SELECT value FROM json_each(?))"
)
# (junk lessons, ham lessons, "kind<TAB>entry" of the first list match, first correspondent):
# block wins over allow, then the earlier key (the address before its domains); the
# correspondent first among the addresses.
_EVIDENCE = """
SELECT
    (SELECT value FROM meta WHERE key = 'junk'),
    (SELECT value FROM meta WHERE key = 'ham'),
    (SELECT l.kind || char(9) || l.value FROM json_each(?1) AS k JOIN lists AS l
        ON l.value = k.value ORDER BY l.kind != 'block', k.key LIMIT 1),
    (SELECT c.address FROM json_each(?2) AS a JOIN correspondents AS c
        ON c.address = a.value ORDER BY a.key LIMIT 1)
"""

_DATA_VERSION = "SELECT data_version FROM pragma_data_version"
# (data_version, words in the table)
_SIZE = "SELECT (SELECT data_version FROM pragma_data_version), (SELECT count(*) FROM words)"
_ALL_WORDS = "SELECT json_group_object(token, json_array(junk, ham)) FROM words"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS words (
    token TEXT PRIMARY KEY, junk INTEGER NOT NULL, ham INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trained (id TEXT PRIMARY KEY, class TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS correspondents (
    address TEXT PRIMARY KEY, last REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (value TEXT PRIMARY KEY, kind TEXT NOT NULL) WITHOUT ROWID;
"""


_EMPTY: list[sqlite3.Connection] = []


class _Resident:
    """How many words the process holds in memory, all accounts together."""

    def __init__(self, limit: int):
        self.limit = limit
        self.words = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.words + n > self.limit:
                return False
            self.words += n
            return True

    def give_back(self, n: int) -> None:
        with self._lock:
            self.words -= n


_RESIDENT = _Resident(RESIDENT_WORDS)


def _empty() -> sqlite3.Connection:
    """An in-memory database with the schema and no rows (shared, read only)."""
    if not _EMPTY:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(_SCHEMA)
        _EMPTY.append(db)
    return _EMPTY[0]


def message_identity(raw: bytes) -> str:
    """What tells one learned message from another: its Message-ID, else a digest of its
    first 64 KiB (a copy of a message is the same message to the filter)."""
    value = first_value(parse_fields(header_block(raw[:65536])), b"message-id")
    if value and value.strip():
        return "id:" + value.strip().decode("utf-8", "replace").lower()[:250]
    return "sha:" + hashlib.sha256(raw[:65536]).hexdigest()


class FilterData:
    """The SQLite file of one account (or of the server-wide lists)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._seen = False  # the file exists
        # The word table in memory ({token: (junk, ham)}) as of data_version `_version`, the
        # words it holds counted in _RESIDENT; None while not held.  `_version` without
        # `_words`: at that version the table was too large to hold.
        self._words: dict[str, tuple[int, int]] | None = None
        self._held = 0
        self._version: int | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.path.exists():
                create_private_file(self.path)  # 0600 before SQLite (and its -wal) use it
            db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False)
            # A rollback journal: one descriptor per open file (WAL would hold three), and
            # the admin command's rare writes can wait for the server's short ones.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def is_empty(self) -> bool:
        """Nothing learned or listed yet: reads answer at once, without SQLite (a delivery
        to an account that never taught its filter costs a stat, not four queries).  A file
        once seen is not looked for again: nothing removes it (a retrain empties it)."""
        if self._db is not None or self._seen:
            return False
        self._seen = self.path.exists()
        return not self._seen

    def _reader(self) -> sqlite3.Connection:
        """The file for reading; an empty stand-in while it does not exist (an account that
        has learned nothing has no file, and reading makes none)."""
        if self.is_empty():
            return _empty()
        return self._conn()

    def close(self) -> None:
        with self._lock:
            self._drop_words()
            if self._db is not None:
                self._db.close()
                self._db = None

    def _drop_words(self) -> None:
        """Stop holding the word table in memory (the lock held)."""
        self._words = None
        self._version = None
        if self._held:
            _RESIDENT.give_back(self._held)
            self._held = 0

    def _words_in_memory(self, db: sqlite3.Connection) -> dict[str, tuple[int, int]] | None:
        """The word table held in memory, read again when another connection wrote the file
        since; None when it is too large to hold (the lock held)."""
        (version,) = db.execute(_DATA_VERSION).fetchone()
        if version == self._version:
            return self._words
        self._drop_words()
        version, size = db.execute(_SIZE).fetchone()
        self._version = version
        if size > WORDS_IN_MEMORY or not _RESIDENT.take(size):
            return None
        self._held = size
        (text,) = db.execute(_ALL_WORDS).fetchone()
        self._words = {t: (j, h) for t, (j, h) in json.loads(text or "{}").items()}
        return self._words

    def _mirror(self, tokens, kind: str, step: int) -> None:
        """A committed lesson (_add) applied to the words held in memory (the lock held)."""
        words = self._words
        if words is None:
            return
        add_junk, add_ham = (step, 0) if kind == JUNK else (0, step)
        for token in tokens:
            junk, ham = words.get(token, (0, 0))
            junk, ham = max(junk + add_junk, 0), max(ham + add_ham, 0)
            if junk or ham:
                words[token] = (junk, ham)
            else:
                words.pop(token, None)
        if len(words) > self._held:
            grown = len(words) - self._held
            if len(words) > WORDS_IN_MEMORY or not _RESIDENT.take(grown):
                self._drop_words()
                return
            self._held += grown

    # -- word statistics -----------------------------------------------------------------

    def totals(self) -> tuple[int, int]:
        """(junk messages, ham messages) learned."""
        if self.is_empty():
            return 0, 0
        with self._lock:
            rows = dict(self._reader().execute("SELECT key, value FROM meta"))
        return rows.get(JUNK, 0), rows.get(HAM, 0)

    def counts(self, tokens) -> dict[str, tuple[int, int]]:
        """(junk, ham) counts of the tokens that have been seen: from memory, else in one
        statement answering in one row."""
        if self.is_empty():
            return {}
        with self._lock:
            db = self._reader()
            words = self._words_in_memory(db)
            if words is not None:
                return {t: words[t] for t in tokens if t in words}
            row = db.execute(_COUNTS, (json.dumps(list(tokens)),)).fetchone()
        found = json.loads(row[0]) if row and row[0] else {}
        return {token: (junk, ham) for token, (junk, ham) in found.items()}

    def evidence(self, addresses) -> tuple[int, int, tuple[str, str] | None, str | None]:
        """What a delivery asks of an account besides its words, in one statement: (junk
        lessons, ham lessons, list_match(addresses), known_correspondent(addresses))."""
        if self.is_empty():
            return 0, 0, None, None
        keys = json.dumps(_list_keys(addresses))
        lowered = json.dumps([a.lower() for a in addresses if a])
        with self._lock:
            junk, ham, listed, correspondent = (
                self._reader().execute(_EVIDENCE, (keys, lowered)).fetchone()
            )
        match = tuple(listed.split("\t", 1)) if listed else None
        return junk or 0, ham or 0, match, correspondent

    def learned_as(self, identity: str) -> str | None:
        with self._lock:
            row = (
                self._reader()
                .execute("SELECT class FROM trained WHERE id = ?", (identity,))
                .fetchone()
            )
        return row[0] if row else None

    def learn(self, identity: str, tokens: set[str], kind: str) -> bool:
        """Count a message as `kind` (JUNK or HAM), taking back an earlier opposite lesson;
        False when it was already learned so."""
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT class FROM trained WHERE id = ?", (identity,)).fetchone()
            if row and row[0] == kind:
                return False
            with db:
                if row:
                    self._add(db, tokens, row[0], -1)
                self._add(db, tokens, kind, +1)
                db.execute("INSERT OR REPLACE INTO trained VALUES (?, ?)", (identity, kind))
            if row:
                self._mirror(tokens, row[0], -1)
            self._mirror(tokens, kind, +1)
            return True

    def forget(self, identity: str, tokens: set[str]) -> bool:
        """Take back whatever the message was learned as."""
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT class FROM trained WHERE id = ?", (identity,)).fetchone()
            if not row:
                return False
            with db:
                self._add(db, tokens, row[0], -1)
                db.execute("DELETE FROM trained WHERE id = ?", (identity,))
            self._mirror(tokens, row[0], -1)
            return True

    @staticmethod
    def _add(db: sqlite3.Connection, tokens: set[str], kind: str, step: int) -> None:
        junk, ham = (step, 0) if kind == JUNK else (0, step)
        db.executemany(
            "INSERT INTO words VALUES (?, max(?, 0), max(?, 0)) ON CONFLICT(token) DO UPDATE"
            " SET junk = max(junk + ?, 0), ham = max(ham + ?, 0)",
            [(t, junk, ham, junk, ham) for t in tokens],
        )
        if step < 0:
            db.execute("DELETE FROM words WHERE junk = 0 AND ham = 0")
        db.execute(
            "INSERT INTO meta VALUES (?, max(?, 0)) ON CONFLICT(key) DO UPDATE"
            " SET value = max(value + ?, 0)",
            (kind, step, step),
        )

    def reset(self) -> None:
        """Forget every lesson (retrain starts here); lists and correspondents stay."""
        with self._lock:
            db = self._conn()
            with db:
                db.execute("DELETE FROM words")
                db.execute("DELETE FROM trained")
                db.execute("DELETE FROM meta")
            if self._words is not None:
                self._words.clear()
                _RESIDENT.give_back(self._held)
                self._held = 0

    def strongest(self, kind: str, limit: int = 10) -> list[tuple[str, int, int]]:
        """The tokens seen most often in `kind` messages (stats)."""
        column = "junk" if kind == JUNK else "ham"
        with self._lock:
            rows = self._reader().execute(
                f"SELECT token, junk, ham FROM words ORDER BY {column} DESC LIMIT ?", (limit,)
            )
            return list(rows)

    def word_count(self) -> int:
        with self._lock:
            return self._reader().execute("SELECT count(*) FROM words").fetchone()[0]

    # -- correspondents ------------------------------------------------------------------

    def add_correspondents(self, addresses) -> None:
        now = time.time()
        rows = [(a.lower(), now) for a in addresses if "@" in a]
        if not rows:
            return
        with self._lock:
            db = self._conn()
            with db:
                db.executemany("INSERT OR REPLACE INTO correspondents VALUES (?, ?)", rows)

    def known_correspondent(self, addresses) -> str | None:
        """The first of `addresses` the user has written to, or None."""
        if self.is_empty():
            return None
        with self._lock:
            db = self._reader()
            for a in addresses:
                sql = "SELECT 1 FROM correspondents WHERE address = ?"
                if a and db.execute(sql, (a.lower(),)).fetchone():
                    return a
        return None

    def correspondent_count(self) -> int:
        with self._lock:
            return self._reader().execute("SELECT count(*) FROM correspondents").fetchone()[0]

    # -- allow and block lists -----------------------------------------------------------

    def set_listed(self, value: str, kind: str | None) -> None:
        """Put an address or domain on the allow or block list (kind None: off both)."""
        value = normalise_entry(value)
        with self._lock:
            db = self._conn()
            with db:
                if kind is None:
                    db.execute("DELETE FROM lists WHERE value = ?", (value,))
                else:
                    db.execute("INSERT OR REPLACE INTO lists VALUES (?, ?)", (value, kind))

    def listed(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._reader().execute("SELECT value, kind FROM lists ORDER BY value"))

    def list_match(self, addresses) -> tuple[str, str] | None:
        """(kind, entry) of the first list entry matching one of `addresses`: the address
        itself, then its domain and each parent domain; block wins over allow."""
        keys = _list_keys(addresses)
        if not keys or self.is_empty():
            return None
        with self._lock:
            db = self._reader()
            marks = ",".join("?" * len(keys))
            rows = db.execute(f"SELECT kind, value FROM lists WHERE value IN ({marks})", keys)
            found = sorted(rows, key=lambda r: r[0] != BLOCK)
        return (found[0][0], found[0][1]) if found else None


def _list_keys(addresses) -> list[str]:
    """The list entries that would match `addresses`, in order: each address, then its domain
    and each parent domain."""
    keys: list[str] = []
    for a in addresses:
        a = (a or "").lower()
        if "@" not in a:
            continue
        keys.append(a)
        labels = a.rpartition("@")[2].split(".")
        keys.extend(".".join(labels[i:]) for i in range(len(labels) - 1))
    return keys


def normalise_entry(value: str) -> str:
    """ "@example.com" and "example.com" are the same domain entry; addresses as lower case."""
    value = value.strip().lower().rstrip(".")
    return value[1:] if value.startswith("@") else value
