"""Greylisting (RFC 6647): a (client network, sender, recipient) seen for the first time is
told to come back later; a real mail server retries, most junk senders never do.

The client's network, not its address, is the first element (a /24 for IPv4, a /64 for
IPv6: RFC 6647 §4.2 on senders that retry from another address of their pool).  A triplet
passes once a retry comes `delay` seconds after the first attempt and is then remembered
`expire` seconds from its last use.  Sender domains whose mail arrived with an SPF or DKIM
pass are remembered too: a client that passes SPF for one of them is not greylisted (§5).

Every method blocks (SQLite in `<data_dir>/junk-greylist.sqlite`): the SMTP session hands
them to the durable-I/O service.
"""

from __future__ import annotations

import ipaddress
import sqlite3
import threading
import time
from pathlib import Path

from mailsuite.durable.modes import create_private_file

GREYLIST_FILE = "junk-greylist.sqlite"
# Expired triplets are removed at most this often.
PURGE_EVERY = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplets (
    key TEXT PRIMARY KEY, first REAL NOT NULL, last REAL NOT NULL, passed INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS domains (domain TEXT PRIMARY KEY, last REAL NOT NULL) WITHOUT ROWID;
"""


def client_network(ip: str) -> str:
    """The /24 or /64 a client address belongs to (its text when it is not an address)."""
    try:
        addr = ipaddress.ip_address(ip.removeprefix("::ffff:") if "." in ip else ip)
    except ValueError:
        return ip
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


class Greylist:
    def __init__(self, path: Path, delay: float, expire: float, clock=time.time):
        self.path = path
        self.delay = delay
        self.expire = expire
        self.clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._purged = 0.0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            if not self.path.exists():
                create_private_file(self.path)
            db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def check(self, ip: str, sender: str, recipient: str) -> float:
        """0 when the triplet may pass now, else the seconds until a retry will pass."""
        key = f"{client_network(ip)}\t{sender.lower()}\t{recipient.lower()}"
        now = self.clock()
        with self._lock:
            db = self._conn()
            with db:
                self._purge(db, now)
                row = db.execute(
                    "SELECT first, passed FROM triplets WHERE key = ?", (key,)
                ).fetchone()
                if row is None:
                    db.execute("INSERT INTO triplets VALUES (?, ?, ?, 0)", (key, now, now))
                    return self.delay
                first, passed = row
                if passed or now - first >= self.delay:
                    db.execute("UPDATE triplets SET passed = 1, last = ? WHERE key = ?", (now, key))
                    return 0.0
                return self.delay - (now - first)

    def pass_triplet(self, ip: str, sender: str, recipient: str) -> None:
        """Remember a triplet as passed (a client let through for another reason)."""
        key = f"{client_network(ip)}\t{sender.lower()}\t{recipient.lower()}"
        now = self.clock()
        with self._lock:
            db = self._conn()
            with db:
                db.execute("INSERT OR REPLACE INTO triplets VALUES (?, ?, ?, 1)", (key, now, now))

    def known_domain(self, domain: str) -> bool:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT last FROM domains WHERE domain = ?", (domain.lower(),))
                .fetchone()
            )
        return row is not None and row[0] > self.clock() - self.expire

    def note_domains(self, domains) -> None:
        """Sender domains of mail that arrived with an SPF or DKIM pass."""
        now = self.clock()
        rows = [(d.lower(), now) for d in domains if d]
        if not rows:
            return
        with self._lock:
            db = self._conn()
            with db:
                db.executemany("INSERT OR REPLACE INTO domains VALUES (?, ?)", rows)

    def _purge(self, db: sqlite3.Connection, now: float) -> None:
        if now - self._purged < PURGE_EVERY:
            return
        self._purged = now
        db.execute("DELETE FROM triplets WHERE last < ?", (now - self.expire,))
        db.execute("DELETE FROM domains WHERE last < ?", (now - self.expire,))
