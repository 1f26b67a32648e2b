"""Concurrent connection limits, in total and per client IP, shared by every listener."""

from __future__ import annotations

from collections import Counter


class ConnectionLimiter:
    def __init__(self, total: int, per_ip: int):
        self.total = total
        self.per_ip = per_ip
        self._by_ip: Counter[str] = Counter()
        self._count = 0

    def acquire(self, ip: str) -> bool:
        """Take a slot for a new connection; False means refuse it (421 / BYE / -ERR)."""
        if self._count >= self.total or self._by_ip[ip] >= self.per_ip:
            return False
        self._count += 1
        self._by_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        if self._by_ip[ip] > 0:
            self._by_ip[ip] -= 1
            self._count -= 1
            if not self._by_ip[ip]:
                del self._by_ip[ip]

    @property
    def active(self) -> int:
        return self._count
