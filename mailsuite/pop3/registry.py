"""Per-process POP3 maildrop locks (IN-USE) and login times (LOGIN-DELAY).

RFC 1939 §8 lets a server refuse a second session on a locked maildrop; RFC 2449 §8.1.1 gives
the [IN-USE] code for it. One lock per mailbox per process: both POP3 listeners (110 and 995)
share it, while IMAP sessions never take it (they see POP3 deletions as expunges instead).
"""

from __future__ import annotations

import time
import weakref


class MaildropRegistry:
    def __init__(self) -> None:
        self._holders: dict[str, object] = {}
        self._last_login: dict[str, float] = {}

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


_registries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def registry_for(store: object) -> MaildropRegistry:
    """The one registry of a store (so the 110 and 995 factories of a process share it)."""
    reg = _registries.get(store)
    if reg is None:
        reg = _registries[store] = MaildropRegistry()
    return reg
