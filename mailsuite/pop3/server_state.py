"""What the POP3 sessions of one server share: maildrop locks (IN-USE), login times
(LOGIN-DELAY) and the listings of each folder's current message set.

RFC 1939 §8 lets a server refuse a second session on a locked maildrop; RFC 2449 §8.1.1 gives
the [IN-USE] code for it. One lock per mailbox per server: both POP3 listeners (110 and 995)
share it, while IMAP sessions never take it (they see POP3 deletions as expunges instead).
One `Pop3State` is created per server by `Services`, so two servers in one process (tests)
never share locks or listings.
"""

from __future__ import annotations

import time
import weakref


class Pop3State:
    def __init__(self) -> None:
        self._holders: dict[str, object] = {}
        self._last_login: dict[str, float] = {}
        # Per folder: the listings of its current message set, shared by the sessions that
        # see it (keyed weakly: a folder nobody holds takes its listings with it).
        self._listings: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def acquire(self, address: str, session: object) -> bool:
        key = address.lower()
        holder = self._holders.get(key)
        if holder is not None and holder is not session:
            return False
        self._holders[key] = session
        return True

    def release(self, address: str, session: object) -> None:
        key = address.lower()
        if self._holders.get(key) is session:
            del self._holders[key]

    def holder(self, address: str) -> object | None:
        return self._holders.get(address.lower())

    def login_delay_left(self, address: str, delay: int, now: float | None = None) -> float:
        """Seconds until `address` may log in again (RFC 2449 §6.5 LOGIN-DELAY); 0 = now."""
        if delay <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        last = self._last_login.get(address.lower())
        if last is None:
            return 0.0
        return max(0.0, last + delay - now)

    def record_login(self, address: str, now: float | None = None) -> None:
        self._last_login[address.lower()] = time.monotonic() if now is None else now

    def shared_listings(self, folder: object, version: tuple) -> dict:
        """The listings dict of `folder` at `version` (a new one when the folder changed)."""
        held = self._listings.get(folder)
        if held is None or held[0] != version:
            held = self._listings[folder] = (version, {})
        return held[1]
