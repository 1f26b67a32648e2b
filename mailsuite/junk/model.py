"""One account's filter data, in `mailsuite-junk.sqlite` beside its Maildir's folders: word
counts, which messages were learned as what, the people the user writes to, and the user's
allow and block lists.  The same file layout holds the server-wide lists
(`<data_dir>/junk-lists.sqlite`, lists only).

Every method blocks: the server calls them in durable-I/O jobs, the admin command in its own
thread, never on the reactor.  What a delivery reads (the lessons' totals, the lists, the
correspondents, the word counts) is held in memory and answered without SQLite: the sqlite3
module lets go of the GIL for every statement and row, and a delivery thread that lets go of
it while the reactor or another delivery wants it waits to get it back.  Whether the file
changed is told by one stat of it: this process's own writes update what is held as they
update the file; a write by another process (the admin command's lists or retrain) changes
the file's size or times, and what is held is read again, in one statement.  A file changed
in the last STAT_TRUSTED_AFTER seconds is asked SQLite's data_version instead (a change within
the file system's time granularity would leave its stat as it was).  An account's words are
held while its table is small (WORDS_IN_MEMORY, RESIDENT_WORDS for the process); beyond, each
delivery asks the file for its words.  The file is made by the first write (a lesson, a list
entry, a correspondent); SQLite's locking lets the admin command and the server share it, a
lock per file serialises this process's writers.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from mailsuite.durable.modes import create_private_file
from mailsuite.junk import classifier
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
# Correspondents held in memory per account, at most (beyond, a delivery asks the file).
CORRESPONDENTS_IN_MEMORY = 20_000
# Tokens never learned that a delivery's judgement remembers as such, per account, at most.
CLUES_UNSEEN = 20_000
# A file's stat is looked at again after this long (seconds) when it was trusted: another
# process's change (the admin command's lists or retrain) shows at the first delivery after
# that.  A stat per delivery let go of the GIL twice more per message, which under load cost
# the delivery thread and the reactor about ten futex calls each time.
RECHECK_AFTER = 0.1
# A file whose last change is older than this (seconds) is known unchanged while its stat is.
STAT_TRUSTED_AFTER = 2.0
# The tokens and addresses go in as one JSON array each (one statement, prepared once, for any
# number), the counts come back as one JSON object (one row).
_COUNTS = (
    "SELECT json_group_object(token, json_array(junk, ham)) FROM words"
    " WHERE token IN (SELECT value FROM json_each(?))"
)
# The first of the addresses (a JSON array) that is a correspondent.
_CORRESPONDENT = (
    "SELECT c.address FROM json_each(?) AS a JOIN correspondents AS c"
    " ON c.address = a.value ORDER BY a.key LIMIT 1"
)
# Which of the addresses (a JSON array) are correspondents.
_KNOWN_CORRESPONDENTS = (
    "SELECT address FROM correspondents WHERE address IN (SELECT value FROM json_each(?))"
)
_DATA_VERSION = "SELECT data_version FROM pragma_data_version"
# Everything a delivery reads, in one statement (one read transaction, one row): the data
# version, the totals and the lists as JSON objects, the correspondents as a JSON array (NULL
# when more than ?1), the number of words and the words as a JSON object (NULL when more than
# ?2).
_LOAD = """
SELECT
    (SELECT data_version FROM pragma_data_version),
    (SELECT json_group_object(key, value) FROM meta),
    (SELECT json_group_object(value, kind) FROM lists),
    CASE WHEN (SELECT count(*) FROM correspondents) <= ?1
        THEN (SELECT json_group_array(address) FROM correspondents) END,
    (SELECT count(*) FROM words),
    CASE WHEN (SELECT count(*) FROM words) <= ?2
        THEN (SELECT json_group_object(token, json_array(junk, ham)) FROM words) END
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS words (
    token TEXT PRIMARY KEY, junk INTEGER NOT NULL, ham INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trained (id TEXT PRIMARY KEY, class TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS correspondents (
    address TEXT PRIMARY KEY, last REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (value TEXT PRIMARY KEY, kind TEXT NOT NULL) WITHOUT ROWID;
"""
# The stat key of a file that does not exist.
_MISSING = ("missing",)
_UNSEEN = (0, 0)


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
_EMPTY: list[sqlite3.Connection] = []


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


def stat_key(path: Path) -> tuple:
    """What tells one state of the file from another (_MISSING when there is none)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return _MISSING
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FilterData:
    """The SQLite file of one account (or of the server-wide lists)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # What is held in memory: as of data_version `_version` of the file (None: nothing
        # read yet), trusted without asking SQLite while the file's stat is `_key`.
        self._key: tuple | None = None
        self._recheck = 0.0  # time.monotonic() after which the stat is looked at again
        self._version: int | None = None
        self._totals = (0, 0)
        self._lists: dict[str, str] = {}  # entry -> ALLOW or BLOCK
        self._correspondents: set[str] | None = set()  # None: too many to hold
        # The word table ({token: (junk, ham)}), its words counted in _RESIDENT; None while
        # not held (too large).
        self._words: dict[str, tuple[int, int]] | None = {}
        self._held = 0
        # (junk lessons, ham lessons, {token: its clue or None}): the clues worked out for
        # these totals, replaced as a whole when the totals or the words change, so that a
        # delivery reading it without the lock never mixes two states.
        self._judging: tuple[int, int, dict] = (0, 0, {})

    # -- the file and what is held of it ------------------------------------------------------

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

    def _fresh(self) -> bool:
        """Make what is held current (one stat when the file did not change, at most every
        RECHECK_AFTER seconds while its stat is trusted); False when there is no file
        (nothing learned or listed: reading makes none)."""
        now = time.monotonic()
        if now < self._recheck and self._key is not None:
            return self._key is not _MISSING
        key = stat_key(self.path)
        if key != self._key:
            with self._lock:
                self._refresh(key)
        self._recheck = now + RECHECK_AFTER
        return key is not _MISSING

    def is_empty(self) -> bool:
        """Nothing learned or listed yet (no file)."""
        return not self._fresh()

    def _refresh(self, key: tuple) -> None:
        """Read the file again if another connection changed it since it was read (the lock
        held; `key` is its stat from before: a change after it shows at the next stat)."""
        if key == self._key:
            return
        if key is _MISSING and self._db is None:
            self._load_empty()
        else:
            db = self._conn()
            if self._version is None or db.execute(_DATA_VERSION).fetchone()[0] != self._version:
                self._load(db)
            if key is _MISSING:
                key = stat_key(self.path)  # made by _conn
        trusted = key is not _MISSING and time.time_ns() - key[2] > STAT_TRUSTED_AFTER * 1e9
        self._key = key if trusted or key is _MISSING else None

    def _load_empty(self) -> None:
        self._drop_words()
        self._version = None
        self._totals = (0, 0)
        self._lists = {}
        self._correspondents = set()
        self._words = {}
        self._judging = (0, 0, {})

    def _load(self, db: sqlite3.Connection) -> None:
        """Everything a delivery reads, from the file (the lock held)."""
        self._drop_words()
        limit = min(WORDS_IN_MEMORY, _RESIDENT.limit - _RESIDENT.words)
        version, meta, lists, correspondents, size, words = db.execute(
            _LOAD, (CORRESPONDENTS_IN_MEMORY, limit)
        ).fetchone()
        self._version = version
        totals = json.loads(meta or "{}")
        self._totals = (totals.get(JUNK, 0), totals.get(HAM, 0))
        self._lists = json.loads(lists or "{}")
        self._correspondents = None if correspondents is None else set(json.loads(correspondents))
        if words is not None and _RESIDENT.take(size):
            self._held = size
            self._words = {t: (j, h) for t, (j, h) in json.loads(words).items()}
        self._judging = (*self._totals, {})

    def _drop_words(self) -> None:
        """Stop holding the word table in memory (the lock held)."""
        self._words = None
        if self._held:
            _RESIDENT.give_back(self._held)
            self._held = 0

    def _writing(self) -> sqlite3.Connection:
        """The file, for a write by this process (the lock held): what is held is brought
        up to date first, the write then updates both, and the file's next stat is not
        trusted (its times may not show the next change)."""
        db = self._conn()
        if self._version is None or db.execute(_DATA_VERSION).fetchone()[0] != self._version:
            self._load(db)
        self._key = None
        return db

    def close(self) -> None:
        with self._lock:
            self._drop_words()
            self._key = self._version = None
            if self._db is not None:
                self._db.close()
                self._db = None

    def _mirror(self, tokens, kind: str, step: int) -> None:
        """A committed lesson (_add) applied to what is held (the lock held)."""
        n_junk, n_ham = self._totals
        if kind == JUNK:
            add_junk, add_ham, n_junk = step, 0, max(n_junk + step, 0)
        else:
            add_junk, add_ham, n_ham = 0, step, max(n_ham + step, 0)
        self._totals = (n_junk, n_ham)
        words = self._words
        if words is not None:
            for token in tokens:
                junk, ham = words.get(token, _UNSEEN)
                junk, ham = max(junk + add_junk, 0), max(ham + add_ham, 0)
                if junk or ham:
                    words[token] = (junk, ham)
                else:
                    words.pop(token, None)
            if len(words) > self._held:
                grown = len(words) - self._held
                if len(words) > WORDS_IN_MEMORY or not _RESIDENT.take(grown):
                    self._drop_words()
                else:
                    self._held += grown
        self._judging = (n_junk, n_ham, {})

    # -- word statistics -----------------------------------------------------------------

    def totals(self) -> tuple[int, int]:
        """(junk messages, ham messages) learned."""
        self._fresh()
        return self._totals

    def counts(self, tokens) -> dict[str, tuple[int, int]]:
        """(junk, ham) counts of the tokens that have been seen: from memory, else in one
        statement answering in one row."""
        if not self._fresh():
            return {}
        words = self._words
        if words is not None:
            return {t: words[t] for t in words.keys() & set(tokens)}
        with self._lock:
            row = self._conn().execute(_COUNTS, (json.dumps(list(tokens)),)).fetchone()
        found = json.loads(row[0]) if row and row[0] else {}
        return {token: (junk, ham) for token, (junk, ham) in found.items()}

    def judge(self, tokens: set[str]) -> classifier.Judgement:
        """The word statistics' judgement of a message's tokens by the lessons so far, as
        held since the delivery's `evidence` (which told it the filter is trained).  Each
        word's clue is worked out once for the current totals and kept until they change."""
        n_junk, n_ham, known = self._judging
        words = self._words
        if words is None:
            return classifier.judge(self.counts(tokens), n_junk, n_ham, 0)
        # The tokens not met since the totals last changed are worked out (None: unseen or
        # no clue, also remembered, up to a bound); then every clue is looked up in C-level
        # loops (a Python step per token was most of this).
        new = tokens.difference(known)
        if new:
            if len(known) + len(new) > len(words) + CLUES_UNSEEN:
                known.clear()
                new = tokens
            for token in new:
                counts = words.get(token)
                known[token] = counts and classifier.clue(token, *counts, n_junk, n_ham)
        return classifier.from_clues(list(filter(None, map(known.get, tokens))))

    def evidence(self, addresses) -> tuple[int, int, tuple[str, str] | None, str | None]:
        """What a delivery asks of an account besides its words: (junk lessons, ham lessons,
        list_match(addresses), the first of them the user has written to).  `addresses` may
        be a function that makes them, called only when there are lists or correspondents."""
        if not self._fresh():
            return 0, 0, None, None
        correspondents = self._correspondents
        if callable(addresses):
            addresses = addresses() if self._lists or correspondents != set() else ()
        lowered = [a.lower() for a in addresses if a]
        if correspondents is not None:
            correspondent = next((a for a in lowered if a in correspondents), None)
        else:
            with self._lock:
                row = self._conn().execute(_CORRESPONDENT, (json.dumps(lowered),)).fetchone()
            correspondent = row[0] if row else None
        return (*self._totals, _match(self._lists, _list_keys(lowered)), correspondent)

    def learned_as(self, identity: str) -> str | None:
        if not self._fresh():
            return None
        with self._lock:
            row = self._conn().execute("SELECT class FROM trained WHERE id = ?", (identity,))
            row = row.fetchone()
        return row[0] if row else None

    def learn(self, identity: str, tokens: set[str], kind: str) -> bool:
        """Count a message as `kind` (JUNK or HAM), taking back an earlier opposite lesson;
        False when it was already learned so."""
        with self._lock:
            db = self._writing()
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
            db = self._writing()
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
            db = self._writing()
            with db:
                db.execute("DELETE FROM words")
                db.execute("DELETE FROM trained")
                db.execute("DELETE FROM meta")
            self._drop_words()
            self._words = {}
            self._totals = (0, 0)
            self._judging = (0, 0, {})

    def strongest(self, kind: str, limit: int = 10) -> list[tuple[str, int, int]]:
        """The tokens seen most often in `kind` messages (stats)."""
        column = "junk" if kind == JUNK else "ham"
        with self._lock:
            rows = self._reader().execute(
                f"SELECT token, junk, ham FROM words ORDER BY {column} DESC LIMIT ?", (limit,)
            )
            return list(rows)

    def _reader(self) -> sqlite3.Connection:
        """The file for reading; an empty stand-in while it does not exist (reading makes
        none)."""
        if self._db is None and not self.path.exists():
            return _empty()
        return self._conn()

    def word_count(self) -> int:
        with self._lock:
            return self._reader().execute("SELECT count(*) FROM words").fetchone()[0]

    # -- correspondents ------------------------------------------------------------------

    def add_correspondents(self, addresses) -> None:
        """Remember `addresses` as people the user writes to.  Only those not known yet are
        written: most mail goes to people written to before, and a write transaction for
        each message sent cost its delivery thread a dozen system calls (each a wait for the
        GIL the reactor holds) to change nothing that is read (`last` is kept for the file's
        readers, not consulted).  All of them held: nothing to ask even of the file's stat,
        as nothing removes a correspondent from the file (a file replaced behind our back is
        read again at the next delivery's look, and who is missing is then written again)."""
        wanted = {a.lower() for a in addresses if "@" in a}
        held = self._correspondents
        if held is not None and wanted <= held:
            return
        if wanted and self._fresh():
            held = self._correspondents
            if held is not None:
                wanted -= held
            else:
                with self._lock:
                    known = self._conn().execute(_KNOWN_CORRESPONDENTS, (json.dumps(list(wanted)),))
                    wanted -= {address for (address,) in known}
        if not wanted:
            return
        now = time.time()
        rows = [(a, now) for a in sorted(wanted)]
        with self._lock:
            db = self._writing()
            with db:
                db.executemany("INSERT OR REPLACE INTO correspondents VALUES (?, ?)", rows)
            held = self._correspondents
            if held is not None:
                held.update(a for a, _ in rows)
                if len(held) > CORRESPONDENTS_IN_MEMORY:
                    self._correspondents = None

    def known_correspondent(self, addresses) -> str | None:
        """The first of `addresses` the user has written to, or None."""
        addresses = [a for a in addresses if a]
        found = self.evidence(addresses)[3]
        return next((a for a in addresses if a.lower() == found), None)

    def correspondent_count(self) -> int:
        with self._lock:
            return self._reader().execute("SELECT count(*) FROM correspondents").fetchone()[0]

    # -- allow and block lists -----------------------------------------------------------

    def set_listed(self, value: str, kind: str | None) -> None:
        """Put an address or domain on the allow or block list (kind None: off both)."""
        value = normalise_entry(value)
        with self._lock:
            db = self._writing()
            with db:
                if kind is None:
                    db.execute("DELETE FROM lists WHERE value = ?", (value,))
                else:
                    db.execute("INSERT OR REPLACE INTO lists VALUES (?, ?)", (value, kind))
            lists = dict(self._lists)
            if kind is None:
                lists.pop(value, None)
            else:
                lists[value] = kind
            self._lists = lists

    def listed(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._reader().execute("SELECT value, kind FROM lists ORDER BY value"))

    def list_match(self, addresses) -> tuple[str, str] | None:
        """(kind, entry) of the first list entry matching one of `addresses`: the address
        itself, then its domain and each parent domain; block wins over allow.  `addresses`
        may be a function that makes them, called only when there are lists."""
        if not self._fresh() or not self._lists:
            return None
        return _match(self._lists, _list_keys(addresses() if callable(addresses) else addresses))


def _match(lists: dict[str, str], keys: list[str]) -> tuple[str, str] | None:
    """The first block entry among `keys`, else the first allow entry."""
    found = None
    for key in keys:
        kind = lists.get(key)
        if kind == BLOCK:
            return BLOCK, key
        if kind is not None and found is None:
            found = (kind, key)
    return found


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
