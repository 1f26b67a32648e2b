"""Mailbox access keys (RFC 4467 §2.4): one random secret per user and mailbox, the key of the
INTERNAL mechanism's HMAC.

Each account keeps its table in its Maildir (`urlauth-keys.json`, 0600), so the keys go
wherever the mailbox goes and survive a restart; Maildir tools ignore a plain file there.
Replacing a key (RESETKEY) revokes every URL signed with the old one.  Every method blocks:
the server calls them inside durable-I/O jobs, the file written with `durable.replace_file`.
"""

from __future__ import annotations

import json
import secrets
import threading

from twisted.logger import Logger

from mailsuite.durable import replace_file
from mailsuite.store import NoSuchMailbox, Store

__all__ = ["KEY_BYTES", "KEYS_FILE", "AccessKeys"]

log = Logger(namespace="mailsuite.urlauth")

KEYS_FILE = "urlauth-keys.json"
# RFC 4467 §10: at least 128 bits of entropy; HMAC-SHA1 takes up to its 512-bit block whole.
KEY_BYTES = 32


class AccessKeys:
    """The mailbox access key tables of a store's accounts, cached once read.

    A key belongs to one incarnation of a mailbox (its UIDVALIDITY): a mailbox deleted and
    made again under the same name, or one renamed into its place, gets a new key, so a URL
    without ;UIDVALIDITY= never opens another message under the old UID."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tables: dict[str, dict[str, tuple[bytes, int]]] = {}
        self._lock = threading.Lock()

    def existing(self, owner: str, mailbox: str, uidvalidity: int) -> bytes | None:
        """The key of `mailbox` in `owner`'s table; None when there is none (or no owner)."""
        with self._lock:
            try:
                entry = self._table(owner).get(mailbox)
            except NoSuchMailbox:
                return None
        return entry[0] if entry is not None and entry[1] == uidvalidity else None

    def key_for(self, owner: str, mailbox: str, uidvalidity: int) -> bytes:
        """The key of `mailbox`, made and stored first if the table has none (RFC 4467 §7:
        GENURLAUTH needs no RESETKEY before its first use)."""
        with self._lock:
            table = self._table(owner)
            entry = table.get(mailbox)
            if entry is not None and entry[1] == uidvalidity:
                return entry[0]
            key = secrets.token_bytes(KEY_BYTES)
            self._save(owner, {**table, mailbox: (key, uidvalidity)})
            return key

    def reset(self, owner: str, mailbox: str, uidvalidity: int) -> None:
        """RESETKEY <mailbox> (RFC 4467 §7): a new key, revoking the URLs of the old one."""
        with self._lock:
            table = self._table(owner)
            key = secrets.token_bytes(KEY_BYTES)
            self._save(owner, {**table, mailbox: (key, uidvalidity)})

    def reset_all(self, owner: str) -> None:
        """RESETKEY without a mailbox: every key of the user goes, and every URL with it."""
        with self._lock:
            self._table(owner)
            self._save(owner, {})

    def _path(self, owner: str):
        return self.store.path_for(owner) / KEYS_FILE

    def _table(self, owner: str) -> dict[str, tuple[bytes, int]]:
        owner = owner.lower()
        table = self._tables.get(owner)
        if table is None:
            path = self._path(owner)
            if not (path.parent / "cur").is_dir():
                raise NoSuchMailbox(owner)
            table = self._tables[owner] = self._read(path)
        return table

    def _read(self, path) -> dict[str, tuple[bytes, int]]:
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            return {
                str(name): (bytes.fromhex(entry["key"]), int(entry["uidvalidity"]))
                for name, entry in data["keys"].items()
            }
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # A damaged table revokes its URLs (the next GENURLAUTH makes new keys); it never
            # stops the server.
            log.error("urlauth: unreadable key table {path}: {e}", path=str(path), e=repr(e))
            return {}

    def _save(self, owner: str, table: dict[str, tuple[bytes, int]]) -> None:
        owner = owner.lower()
        keys = {
            name: {"key": key.hex(), "uidvalidity": uidvalidity}
            for name, (key, uidvalidity) in sorted(table.items())
        }
        data = json.dumps({"version": 1, "keys": keys}, indent=1).encode() + b"\n"
        replace_file(self._path(owner), data)
        self._tables[owner] = table

    def forget(self) -> None:
        """Drop the cache (tests: what a restart does)."""
        with self._lock:
            self._tables.clear()
