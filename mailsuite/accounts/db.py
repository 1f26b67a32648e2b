"""Domains, users and aliases in SQLite (WAL), shared by the server and the admin command.

Each call opens its own short transaction, so `mailsuite user add` while the server runs is seen
by the server on its next lookup, with no restart. Lookups (domain, address resolution, user) are
remembered per thread until any connection commits a change: a look at the WAL index's header
(below) instead of a transaction of several SELECTs on every RCPT and every delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import mmap
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailsuite.accounts.addresses import BadAddress, lookup_domain, parse_address, parse_domain
from mailsuite.accounts.errors import AccountError, AccountExists, NoSuchAccount
from mailsuite.accounts.passwords import hash_password, verify_password
from mailsuite.accounts.scram_keys import ScramKeys, derive_keys, unknown_user_keys
from mailsuite.durable.modes import create_private_file, make_private_dirs

SCHEMA = """
CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS users (
    address TEXT PRIMARY KEY,
    password TEXT NOT NULL,
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    quota_messages INTEGER NOT NULL DEFAULT 0,
    enabled INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS aliases (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (source, target)
);
"""
MAX_ALIAS_DEPTH = 10
# Lookups remembered per thread before the cache starts over (address probing must not grow it).
LOOKUP_CACHE_ENTRIES = 10_000
# Successful verifications are remembered as an HMAC for a while, so that phones reconnecting
# every few minutes do not pay an argon2 verification each time (Dovecot's auth cache does the same).
VERIFY_CACHE_SECONDS = 600


__all__ = ["AccountError", "AccountExists", "Accounts", "BadAddress", "NoSuchAccount", "User"]


@dataclass(frozen=True)
class User:
    address: str
    quota_bytes: int
    quota_messages: int
    enabled: bool


@dataclass(frozen=True)
class Resolution:
    local: tuple[str, ...]
    remote: tuple[str, ...]


def normalize_address(address: str) -> str:
    """An address as lookups compare it: lower case (local parts are compared
    case-insensitively too, as Postfix's virtual maps do in practice), the domain in A-labels.
    Lenient on purpose: what is looked up need not be valid, only what is stored
    (addresses.parse_address, at every write)."""
    address = address.strip()
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise BadAddress(f"{address!r} is not an address")
    return f"{local.lower()}@{lookup_domain(domain)}"


# A function the account changes call inside their transaction, before it commits: what it
# does on disk (the Maildir made or set aside) happens only with the row, and the row only
# with it (it raises to roll the transaction back).
BeforeCommit = Callable[[str], None]


class Accounts:
    def __init__(self, path: Path, initial_domains=()):
        self.path = Path(path)
        make_private_dirs(self.path.parent)
        create_private_file(self.path)  # before SQLite creates it (and its -wal, -shm) 0644
        self._local = threading.local()
        self._secret = os.urandom(32)
        self._verified: dict[str, tuple[bytes, float]] = {}
        # Password checks asked for (right or wrong, cached or hashed): what a guesser got
        # tried, read by the throttle's tests and bench/hostile.py.
        self.verifications = 0
        self._verifications_lock = threading.Lock()
        conn = self._db().conn
        conn.executescript(SCHEMA)
        self._add_scram_column()
        self._unknown_user_secret: bytes | None = None
        self._commits, shm_fd = _commit_watch(self.path, conn)
        if shm_fd is not None:
            weakref.finalize(self, os.close, shm_fd)
        self._watch_conn = conn  # kept open with the mapping (see _commit_watch)
        with self._write() as db:
            for d in initial_domains:
                db.execute("INSERT OR IGNORE INTO domains VALUES (?)", (parse_domain(d),))

    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = _Tx(conn)
            conn = self._local.conn
        return conn

    def _write(self) -> _Tx:
        """The thread's connection for a transaction that writes: BEGIN IMMEDIATE takes the
        write lock up front (waiting up to the busy timeout), where a deferred BEGIN would fail
        at once with "database is locked" if another connection wrote after our first read."""
        return self._db().immediate()

    def _lookups(self) -> dict:
        """This thread's lookup cache, emptied when anything was committed since it was filled:
        by any connection (the WAL index header moves) or by this one (total_changes moves)."""
        conn = self._db().conn
        watch = self._commits
        mark = watch[:48] if watch is not None else conn.execute("PRAGMA data_version").fetchone()
        token = (mark, conn.total_changes)
        local = self._local
        if getattr(local, "token", None) != token or len(local.lookups) > LOOKUP_CACHE_ENTRIES:
            local.token = token
            local.lookups = {}
        return local.lookups

    # -- domains ---------------------------------------------------------------------------

    def add_domain(self, domain: str) -> str:
        """Add a local domain; returns it as stored (A-labels, lower case)."""
        domain = parse_domain(domain)
        with self._write() as db:
            if db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                raise AccountExists(f"domain {domain} exists")
            db.execute("INSERT INTO domains VALUES (?)", (domain,))
        return domain

    def del_domain(self, domain: str) -> str:
        domain = parse_domain(domain)
        with self._write() as db:
            if db.execute("SELECT 1 FROM users WHERE address LIKE ?", (f"%@{domain}",)).fetchone():
                raise AccountError(f"domain {domain} still has users")
            if not db.execute("DELETE FROM domains WHERE name=?", (domain,)).rowcount:
                raise NoSuchAccount(f"no such domain {domain}")
        return domain

    def list_domains(self) -> list[str]:
        with self._db() as db:
            return [r[0] for r in db.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, domain: str) -> bool:
        return self._domain_known(self._lookups(), lookup_domain(domain))

    def _domain_known(self, lookups: dict, domain: str) -> bool:
        def query() -> bool:
            with self._db() as db:
                return (
                    db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone()
                    is not None
                )

        return _remember(lookups, ("domain", domain), query)

    # -- users -----------------------------------------------------------------------------

    def add_user(
        self,
        address: str,
        password: str,
        quota_bytes: int = 0,
        quota_messages: int = 0,
        *,
        stored_hash: str | None = None,
        before_commit: BeforeCommit | None = None,
    ) -> User:
        """Create an account in one transaction. `stored_hash` (a hash carried over from
        another server) replaces `password`; `before_commit(address)` runs inside the
        transaction (makes the Maildir), so that a failure of either leaves neither."""
        address = parse_address(address)
        domain = address.rpartition("@")[2]
        if quota_bytes < 0 or quota_messages < 0:
            raise AccountError("a quota is 0 (unlimited) or more")
        if stored_hash is not None:
            hashed, scram = stored_hash, None
        elif not password:
            raise AccountError("empty password")
        else:
            hashed, scram = hash_password(password), _scram_column(password)
        with self._write() as db:
            if not db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
                raise NoSuchAccount(
                    f"{domain} is not a local domain (add it with 'mailsuite domain add')"
                )
            if db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
                raise AccountExists(f"user {address} exists")
            db.execute(
                "INSERT INTO users (address, password, quota_bytes, quota_messages, scram) "
                "VALUES (?,?,?,?,?)",
                (address, hashed, quota_bytes, quota_messages, scram),
            )
            if before_commit is not None:
                before_commit(address)
        return User(address, quota_bytes, quota_messages, True)

    def import_user_hash(self, address: str, stored_hash: str) -> None:
        """Set a hash carried over from another server (Dovecot `{SCHEME}` prefixes kept).  The
        SCRAM keys cannot be made from a hash: the account offers SCRAM again after its next
        login with the password (verify_password) or its next password change."""
        self._set_secrets(address, stored_hash, None)

    def _set_secrets(self, address: str, stored_hash: str, scram: str | None) -> None:
        address = normalize_address(address)
        with self._write() as db:
            if not db.execute(
                "UPDATE users SET password=?, scram=? WHERE address=?",
                (stored_hash, scram, address),
            ).rowcount:
                raise NoSuchAccount(f"no such user {address}")
        self._verified.pop(address, None)

    def del_user(self, address: str, *, before_commit: BeforeCommit | None = None) -> str:
        """Remove an account in one transaction; `before_commit(address)` runs inside it (sets
        the Maildir aside), so that a failure of either leaves both. Returns the address."""
        address = normalize_address(address)
        with self._write() as db:
            if not db.execute("DELETE FROM users WHERE address=?", (address,)).rowcount:
                raise NoSuchAccount(f"no such user {address}")
            if before_commit is not None:
                before_commit(address)
        self._verified.pop(address, None)
        return address

    def set_password(self, address: str, password: str) -> None:
        if not password:
            raise AccountError("empty password")
        self._set_secrets(address, hash_password(password), _scram_column(password))

    def set_enabled(self, address: str, enabled: bool) -> None:
        address = normalize_address(address)
        with self._write() as db:
            if not db.execute(
                "UPDATE users SET enabled=? WHERE address=?", (int(enabled), address)
            ).rowcount:
                raise NoSuchAccount(f"no such user {address}")
        self._verified.pop(address, None)

    def set_quota(self, address: str, quota_bytes: int, quota_messages: int) -> None:
        address = normalize_address(address)
        if quota_bytes < 0 or quota_messages < 0:
            raise AccountError("a quota is 0 (unlimited) or more")
        with self._write() as db:
            cur = db.execute(
                "UPDATE users SET quota_bytes=?, quota_messages=? WHERE address=?",
                (quota_bytes, quota_messages, address),
            )
            if not cur.rowcount:
                raise NoSuchAccount(f"no such user {address}")

    def get_user(self, address: str) -> User | None:
        try:
            address = normalize_address(address)
        except AccountError:
            return None

        def query() -> User | None:
            with self._db() as db:
                row = db.execute(
                    "SELECT address, quota_bytes, quota_messages, enabled FROM users "
                    "WHERE address=?",
                    (address,),
                ).fetchone()
            return User(row[0], row[1], row[2], bool(row[3])) if row else None

        return _remember(self._lookups(), ("user", address), query)

    def list_users(self, domain: str | None = None) -> list[User]:
        with self._db() as db:
            if domain:
                rows = db.execute(
                    "SELECT address, quota_bytes, quota_messages, enabled FROM users "
                    "WHERE address LIKE ? ORDER BY address",
                    (f"%@{parse_domain(domain)}",),
                )
            else:
                rows = db.execute(
                    "SELECT address, quota_bytes, quota_messages, enabled FROM users ORDER BY address"
                )
            return [User(r[0], r[1], r[2], bool(r[3])) for r in rows]

    # -- aliases ---------------------------------------------------------------------------

    def add_alias(self, source: str, targets: list[str]) -> tuple[str, list[str]]:
        """`source` is an address or `@domain` (catch-all) of a local domain. Refused when it
        would make a loop (mail going round the aliases and back to `source`). Returns the
        source and targets as stored."""
        source = self._alias_source(source)
        if not targets:
            raise AccountError("an alias needs at least one target")
        norm = list(dict.fromkeys(parse_address(t) for t in targets))
        with self._write() as db:
            loop = self._alias_loop(db, source, norm)
            if loop:
                raise AccountError(
                    "alias loop: " + " -> ".join(loop) + "; mail would come back to " + source
                )
            for t in norm:
                db.execute("INSERT OR IGNORE INTO aliases VALUES (?, ?)", (source, t))
        return source, norm

    def del_alias(self, source: str, target: str | None = None) -> str:
        """Remove an alias, or one target of it; returns the source as stored."""
        source = self._alias_source(source)
        with self._write() as db:
            if target:
                target = normalize_address(target)
                cur = db.execute(
                    "DELETE FROM aliases WHERE source=? AND target=?", (source, target)
                )
                if not cur.rowcount and self._alias_targets(db, source):
                    raise NoSuchAccount(f"alias {source} has no target {target}")
            else:
                cur = db.execute("DELETE FROM aliases WHERE source=?", (source,))
            if not cur.rowcount:
                raise NoSuchAccount(f"no such alias {source}")
        return source

    def list_aliases(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {}
        with self._db() as db:
            for source, target in db.execute(
                "SELECT source, target FROM aliases ORDER BY source, target"
            ):
                result.setdefault(source, []).append(target)
        return result

    def _alias_source(self, source: str) -> str:
        source = source.strip()
        if source.startswith("@"):
            domain = parse_domain(source[1:])
            source = "@" + domain
        else:
            source = parse_address(source)
            domain = source.rpartition("@")[2]
        if not self.is_local_domain(domain):
            raise NoSuchAccount(f"{domain} is not a local domain")
        return source

    def _alias_targets(self, db, source: str) -> list[str]:
        return [r[0] for r in db.execute("SELECT target FROM aliases WHERE source=?", (source,))]

    def _alias_loop(self, db, source: str, targets: list[str]) -> list[str] | None:
        """The path by which `source -> targets` would lead mail back to `source`, following
        the aliases as `_expand` does (exact address, then the base of a +address, then the
        catch-all of an address that is neither user nor alias); None when there is none.

        A user that names itself among its targets keeps a copy: that is no loop."""
        is_user = not source.startswith("@") and self._user_row(db, source)
        if source in targets and not is_user:
            return [source, source]
        added = {source: targets}
        seen: set[str] = set()
        path = [source]

        def walk(address: str) -> list[str] | None:
            key, onward = self._forwarding(db, address, added)
            if key == source:
                return [*path, address]
            if key is None or key in seen:
                return None
            seen.add(key)
            path.append(address)
            for nxt in onward:
                found = walk(nxt)
                if found:
                    return found
            path.pop()
            return None

        for t in targets:
            if t == source:
                continue
            found = walk(t)
            if found:
                return found
        return None

    def _forwarding(self, db, address: str, added: dict) -> tuple[str | None, list[str]]:
        """(the alias entry that decides where `address` goes, the addresses it goes on to);
        (None, []) for a remote address or one that nothing takes."""
        localpart, _, domain = address.rpartition("@")
        if not db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
            return None, []
        candidates = [address]
        if "+" in localpart:
            candidates.append(localpart.split("+", 1)[0] + "@" + domain)
        for cand in candidates:
            targets = self._alias_targets(db, cand) + added.get(cand, [])
            if targets or self._user_row(db, cand):
                return cand, [t for t in targets if t != cand]
        catch_all = "@" + domain
        targets = self._alias_targets(db, catch_all) + added.get(catch_all, [])
        return (catch_all, targets) if targets else (None, [])

    def _user_row(self, db, address: str) -> bool:
        return db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone() is not None

    # -- resolution --------------------------------------------------------------------------

    def resolve(self, address: str) -> Resolution | None:
        """Local mailboxes and remote addresses `address` delivers to; None if unknown."""
        try:
            address = normalize_address(address)
        except AccountError:
            return None
        return self._resolved(self._lookups(), address)

    def _resolved(self, lookups: dict, address: str) -> Resolution | None:
        """resolve() for a normalized address, through `lookups`."""
        return _remember(lookups, ("resolve", address), lambda: self._resolve(address))

    def route(self, address: str) -> tuple[bool, Resolution | None]:
        """Whether `address` is in a local domain, and if so what it resolves to: what RCPT and
        delivery ask, answered with one check of the lookup cache instead of two."""
        lookups = self._lookups()
        # RCPT asks, then delivery asks again for the same address: the answer is kept as
        # it was asked, with the lookups it was made from (and emptied with them).
        key = ("route", address)
        found = lookups.get(key)
        if found is None:
            found = lookups[key] = self._route(lookups, address)
        return found

    def _route(self, lookups: dict, address: str) -> tuple[bool, Resolution | None]:
        if not self._domain_known(lookups, lookup_domain(address.rpartition("@")[2])):
            return False, None
        try:
            return True, self._resolved(lookups, normalize_address(address))
        except AccountError:
            return True, None

    def _resolve(self, address: str) -> Resolution | None:
        local: list[str] = []
        remote: list[str] = []
        with self._db() as db:
            if not self._expand(db, address, local, remote, set(), 0):
                return None
        if not local and not remote:
            return None
        return Resolution(tuple(dict.fromkeys(local)), tuple(dict.fromkeys(remote)))

    def _expand(self, db, address: str, local, remote, seen: set, depth: int) -> bool:
        if address in seen or depth > MAX_ALIAS_DEPTH:
            return True  # a loop or too deep: that branch adds nothing
        seen.add(address)
        localpart, _, domain = address.rpartition("@")
        if not db.execute("SELECT 1 FROM domains WHERE name=?", (domain,)).fetchone():
            remote.append(address)
            return True
        candidates = [address]
        if "+" in localpart:
            # Plus-addressing: user+tag@domain delivers to user (after an exact match).
            candidates.append(localpart.split("+", 1)[0] + "@" + domain)
        for cand in candidates:
            row = db.execute("SELECT enabled FROM users WHERE address=?", (cand,)).fetchone()
            targets = self._alias_targets(db, cand)
            if row or targets:
                if row:
                    local.append(cand)
                for t in targets:
                    if t != cand:
                        self._expand(db, t, local, remote, seen, depth + 1)
                return True
        targets = self._alias_targets(db, "@" + domain)
        if targets:
            for t in targets:
                self._expand(db, t, local, remote, seen, depth + 1)
            return True
        return False

    def sender_addresses(self, user_address: str) -> set[str]:
        """Addresses `user_address` may use as envelope sender and From: its own address and
        every alias (not catch-all) that delivers to it."""
        user_address = normalize_address(user_address)
        lookups = self._lookups()

        def query() -> frozenset[str]:
            allowed = {user_address}
            with self._db() as db:
                sources = [r[0] for r in db.execute("SELECT DISTINCT source FROM aliases")]
            for source in sources:
                # Sources are stored normalized; catch-alls (@domain) name nobody's address.
                if not source.startswith("@"):
                    res = self._resolved(lookups, source)
                    if res and user_address in res.local:
                        allowed.add(source)
            return frozenset(allowed)

        return set(_remember(lookups, ("senders", user_address), query))

    # -- authentication ------------------------------------------------------------------------

    def verify_password(self, address: str, password: str) -> str | None:
        """The canonical address when the password is right and the user enabled; blocking."""
        with self._verifications_lock:
            self.verifications += 1
        try:
            address = normalize_address(address)
        except AccountError:
            return None
        with self._db() as db:
            address = _login_account(db, address)
            row = db.execute(
                "SELECT password, enabled, scram FROM users WHERE address=?", (address,)
            ).fetchone()
        if row is None or not row[1]:
            # Hash anyway so that unknown users cost as much as known ones (no user probing by timing).
            verify_password(password, _dummy_hash())
            return None
        stored = row[0]
        tag = hmac.new(self._secret, f"{stored}\0{password}".encode(), hashlib.sha256).digest()
        cached = self._verified.get(address)
        if (
            cached
            and hmac.compare_digest(cached[0], tag)
            and time.monotonic() - cached[1] < VERIFY_CACHE_SECONDS
        ):
            return address
        ok, new_hash = verify_password(password, stored)
        if not ok:
            return None
        if row[2] is None:
            # An account whose hash came from another server gets its SCRAM keys now that
            # the password itself has been seen.
            scram = _scram_column(password)
            if scram is not None:
                with self._write() as db:
                    db.execute(
                        "UPDATE users SET scram=? WHERE address=? AND password=? AND scram IS NULL",
                        (scram, address, stored),
                    )
        if new_hash:
            with self._write() as db:
                db.execute(
                    "UPDATE users SET password=? WHERE address=? AND password=?",
                    (new_hash, address, stored),
                )
            stored = new_hash
            tag = hmac.new(self._secret, f"{stored}\0{password}".encode(), hashlib.sha256).digest()
        self._verified[address] = (tag, time.monotonic())
        return address

    def scram_keys(self, address: str) -> tuple[str | None, ScramKeys]:
        """(canonical address, its SCRAM keys) of an enabled user who has them; else (None,
        keys that look the same and match no proof).  Blocking: call it off the reactor.  It
        counts as a verification: it is what gives a guesser one try."""
        with self._verifications_lock:
            self.verifications += 1
        try:
            address = normalize_address(address)
        except AccountError:
            address = address.lower()
        with self._db() as db:
            address = _login_account(db, address)
            row = db.execute(
                "SELECT enabled, scram FROM users WHERE address=?", (address,)
            ).fetchone()
        keys = ScramKeys.decode(row[1]) if row is not None and row[0] else None
        if keys is None:
            return None, unknown_user_keys(self._secret_for_unknown_users(), address)
        return address, keys

    def _secret_for_unknown_users(self) -> bytes:
        """The key of the made-up salts, kept in the database so that they stay the same
        across restarts, as real salts do."""
        if self._unknown_user_secret is None:
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO secrets VALUES ('scram-unknown-user', ?)",
                    (os.urandom(32),),
                )
                row = db.execute(
                    "SELECT value FROM secrets WHERE name='scram-unknown-user'"
                ).fetchone()
            self._unknown_user_secret = bytes(row[0])
        return self._unknown_user_secret

    def _add_scram_column(self) -> None:
        """Databases made before SCRAM get the keys' column (empty: those accounts offer SCRAM
        after their next login or password change) and the secrets table, in place."""
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
            )
            columns = {r[1] for r in db.execute("PRAGMA table_info(users)")}
            if "scram" not in columns:
                db.execute("ALTER TABLE users ADD COLUMN scram TEXT")


def _scram_column(password: str) -> str | None:
    """The stored SCRAM keys of `password` (slow on purpose: PBKDF2); None if SASLprep
    refuses it."""
    keys = derive_keys(password)
    return keys.encode() if keys is not None else None


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("mailsuite-dummy-password"))
    return _DUMMY[0]


def _remember(lookups: dict, key: tuple, compute):
    """The value cached under `key`, computed once."""
    if key not in lookups:
        lookups[key] = compute()
    return lookups[key]


def _commit_watch(path: Path, conn: sqlite3.Connection) -> tuple[mmap.mmap | None, int | None]:
    """A read-only mapping of the database's -shm file, whose first 48 bytes (the WAL index
    header: a change counter, the frame count, the salts; sqlite.org/walformat.html) change at
    every commit, checkpoint and WAL restart by any connection, or None where the database is
    not in WAL mode (then each check is a `PRAGMA data_version` query).

    Why: that query cost 15-20 us on a busy reactor (measured under the relay benchmark; under
    2 us in a loop), three times per relayed message, where reading the header is a copy of 48
    bytes.  `conn` must stay open while the mapping is used: as long as it is, no other
    connection deletes the -shm file and makes a new one."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        return None, None
    try:
        fd = os.open(f"{path}-shm", os.O_RDONLY)
    except OSError:
        return None, None
    # The descriptor is returned, to be closed only with the Accounts object: closing any
    # descriptor of a file drops every POSIX lock the process holds on it (fcntl(2)), here
    # SQLite's own lock that tells other processes the -shm file is in use. Without that lock
    # the next admin command would take the file as unused and truncate it under this
    # mapping (SIGBUS at the next read).
    try:
        if os.fstat(fd).st_size < 48:
            return None, fd
        return mmap.mmap(fd, 48, access=mmap.ACCESS_READ), fd
    except OSError:
        return None, fd


class _Tx:
    """A connection used as `with db:` for one IMMEDIATE transaction (or plain reads)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.depth = 0
        self._begin = "BEGIN"

    def immediate(self) -> _Tx:
        self._begin = "BEGIN IMMEDIATE"
        return self

    def __enter__(self):
        begin, self._begin = self._begin, "BEGIN"
        if self.depth == 0:
            self.conn.execute(begin)
        self.depth += 1
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.depth -= 1
        if self.depth == 0:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def _login_account(db, address: str) -> str:
    """The user a login name means, for every protocol's login (passwords and SCRAM): the
    address itself, else for user+tag@domain the user, as delivery resolves a plus address,
    so that the name autoconfig hands out (the address typed into the mail program) logs in."""
    if db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
        return address
    localpart, _, domain = address.rpartition("@")
    if "+" in localpart:
        return localpart.split("+", 1)[0] + "@" + domain
    return address
