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
    """The mailbox access key tables of a store's accounts, cached once read."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._tables: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def existing(self, owner: str, mailbox: str) -> bytes | None:
        """The key of `mailbox` in `owner`'s table; None when there is none (or no owner)."""
        with self._lock:
            try:
                return self._table(owner).get(mailbox)
            except NoSuchMailbox:
                return None

    def key_for(self, owner: str, mailbox: str) -> bytes:
        """The key of `mailbox`, made and stored first if the table has none (RFC 4467 §7:
        GENURLAUTH needs no RESETKEY before its first use)."""
        with self._lock:
            table = self._table(owner)
            key = table.get(mailbox)
            if key is None:
                key = secrets.token_bytes(KEY_BYTES)
                self._save(owner, {**table, mailbox: key})
            return key

    def reset(self, owner: str, mailbox: str | None = None) -> None:
        """RESETKEY (RFC 4467 §7): a new key for `mailbox`, or no keys at all without one."""
        with self._lock:
            table = self._table(owner)
            if mailbox is None:
                self._save(owner, {})
            else:
                self._save(owner, {**table, mailbox: secrets.token_bytes(KEY_BYTES)})

    def _path(self, owner: str):
        return self.store.path_for(owner) / KEYS_FILE

    def _table(self, owner: str) -> dict[str, bytes]:
        owner = owner.lower()
        table = self._tables.get(owner)
        if table is None:
            path = self._path(owner)
            if not (path.parent / "cur").is_dir():
                raise NoSuchMailbox(owner)
            table = self._tables[owner] = self._read(path)
        return table

    def _read(self, path) -> dict[str, bytes]:
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read())
            return {str(k): bytes.fromhex(v) for k, v in data["keys"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            # A damaged table revokes its URLs (the next GENURLAUTH makes new keys); it never
            # stops the server.
            log.error("urlauth: unreadable key table {path}: {e}", path=str(path), e=repr(e))
            return {}

    def _save(self, owner: str, table: dict[str, bytes]) -> None:
        owner = owner.lower()
        data = {"version": 1, "keys": {k: v.hex() for k, v in sorted(table.items())}}
        replace_file(self._path(owner), json.dumps(data, indent=1).encode() + b"\n")
        self._tables[owner] = table

    def forget(self) -> None:
        """Drop the cache (tests: what a restart does)."""
        with self._lock:
            self._tables.clear()
