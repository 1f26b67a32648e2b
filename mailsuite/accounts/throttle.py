"""Failed-login back-off per client IP and per account.

A few failures are free; after that each attempt must wait a doubling delay, and many failures
lock the key out for a while.  The per-IP limits are looser than the per-account ones because
Outlook.com and phone carriers put many users behind one address.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


class FailedLoginThrottle:
    def __init__(
        self,
        free_failures: int = 3,
        base_delay: float = 1.0,
        max_delay: float = 15.0,
        lockout_failures: int = 10,
        lockout_seconds: float = 300,
        ip_lockout_failures: int = 30,
        ip_free_failures: int = 10,
        clock=time.monotonic,
    ):
        self.free = free_failures
        self.base = base_delay
        self.max_delay = max_delay
        self.lockout_failures = lockout_failures
        self.lockout_seconds = lockout_seconds
        self.ip_lockout_failures = ip_lockout_failures
        self.ip_free = ip_free_failures
        self.clock = clock
        self._records: dict[tuple[str, str], _Record] = {}

    def _wait_for(self, kind: str, key: str, limit: int, free: int) -> float:
        rec = self._records.get((kind, key))
        if rec is None:
            return 0.0
        now = self.clock()
        if now - rec.last > self.lockout_seconds:
            del self._records[(kind, key)]
            return 0.0
        if rec.failures >= limit:
            return rec.last + self.lockout_seconds - now
        if rec.failures < free:
            return 0.0
        delay = min(self.max_delay, self.base * 2 ** (rec.failures - free))
        return max(0.0, rec.last + delay - now)

    def retry_after(self, ip: str, account: str) -> float:
        """Seconds the next attempt must wait (0: go ahead)."""
        return max(
            self._wait_for("ip", ip, self.ip_lockout_failures, self.ip_free),
            self._wait_for("user", account.lower(), self.lockout_failures, self.free),
        )

    def failed(self, ip: str, account: str) -> None:
        now = self.clock()
        for key in (("ip", ip), ("user", account.lower())):
            rec = self._records.setdefault(key, _Record())
            rec.failures += 1
            rec.last = now
        if len(self._records) > 100_000:
            self._expire(now)

    def succeeded(self, ip: str, account: str) -> None:
        self._records.pop(("user", account.lower()), None)

    def _expire(self, now: float) -> None:
        for key, rec in list(self._records.items()):
            if now - rec.last > self.lockout_seconds:
                del self._records[key]
