"""Failed-login back-off that a guesser cannot turn against the account's owner.

Three records are kept:
- per (client network, account): the guesser's own record.  A few failures are free, then each
  attempt waits a doubling delay, and many failures lock that pair out for a while.  The network
  is the /24 of an IPv4 address and the /64 of an IPv6 one (one IPv6 host holds a whole /64).
- per client address: many failures over any accounts slow and then lock the address.  Its
  limits are looser, because Outlook.com and phone carriers put many users behind one address.
- per account, counted in client addresses: failures from one address count once, so three
  failures from one place never slow the account elsewhere; only an attack spread over many
  addresses does, with the same schedule as the pair's.

A client network from which the account has logged in before (the known-good table: a bounded
LRU) is exempt from the per-address and per-account records: an attack from elsewhere, or a
neighbour behind the same address guessing other accounts, never locks out the owner's usual
client.  Its own pair record still applies.

Attempts are counted before the password is checked (`begin`), and taken back when it was right
(`finish`), so concurrent guesses count as many as they are.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from mailsuite.config import AuthConfig


def client_network(ip: str) -> str:
    """The network an address belongs to for the pair record and the known-good table: the /24
    of IPv4 (and of IPv4-mapped IPv6), the /64 of IPv6; other text as it is."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def client_address(ip: str) -> str:
    """The key of the per-address record: an IPv4 address itself, the /64 of IPv6."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6:
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


@dataclass
class _Record:
    failures: int = 0
    last: float = 0.0


@dataclass
class _AccountRecord:
    addresses: set[str] = field(default_factory=set)
    last: float = 0.0

    @property
    def failures(self) -> int:
        return len(self.addresses)


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
        known_good_entries: int = 10_000,
        clock=time.monotonic,
    ):
        self.free = free_failures
        self.base = base_delay
        self.max_delay = max_delay
        self.lockout_failures = lockout_failures
        self.lockout_seconds = lockout_seconds
        self.ip_lockout_failures = ip_lockout_failures
        self.ip_free = ip_free_failures
        self.known_good_entries = known_good_entries
        self.clock = clock
        self._records: dict[tuple, _Record | _AccountRecord] = {}
        self._known_good: OrderedDict[tuple[str, str], None] = OrderedDict()

    @classmethod
    def from_config(cls, auth: AuthConfig) -> FailedLoginThrottle:
        return cls(
            free_failures=auth.free_failures,
            base_delay=auth.base_delay,
            max_delay=auth.max_delay,
            lockout_failures=auth.lockout_failures,
            lockout_seconds=auth.lockout_seconds,
            ip_lockout_failures=auth.ip_lockout_failures,
            ip_free_failures=auth.ip_free_failures,
            known_good_entries=auth.known_good_entries,
        )

    def _wait_for(self, key: tuple, limit: int, free: int) -> float:
        rec = self._records.get(key)
        if rec is None:
            return 0.0
        now = self.clock()
        if now - rec.last > self.lockout_seconds:
            del self._records[key]
            return 0.0
        if rec.failures >= limit:
            return rec.last + self.lockout_seconds - now
        if rec.failures < free:
            return 0.0
        delay = min(self.max_delay, self.base * 2 ** (rec.failures - free))
        return max(0.0, rec.last + delay - now)

    def known_good(self, ip: str, account: str) -> bool:
        """Whether the account has logged in from this client's network before."""
        return (account.lower(), client_network(ip)) in self._known_good

    def retry_after(self, ip: str, account: str) -> float:
        """Seconds the next attempt must wait (0: go ahead)."""
        account = account.lower()
        net = client_network(ip)
        wait = self._wait_for(("pair", net, account), self.lockout_failures, self.free)
        if (account, net) in self._known_good:
            return wait
        return max(
            wait,
            self._wait_for(("ip", client_address(ip)), self.ip_lockout_failures, self.ip_free),
            self._wait_for(("account", account), self.lockout_failures, self.free),
        )

    def begin(self, ip: str, account: str) -> float:
        """Before a password is checked: the seconds to wait (nothing counted), or 0 with the
        attempt already counted as a failure, so that attempts in flight count as well; call
        `finish` with the outcome."""
        wait = self.retry_after(ip, account)
        if wait <= 0:
            self.failed(ip, account)
        return wait

    def finish(self, ip: str, account: str, ok: bool) -> None:
        """After a check that `begin` counted: a right password takes the failure back."""
        if not ok:
            return
        rec = self._records.get(("ip", client_address(ip)))
        if rec is not None:
            rec.failures -= 1
            if rec.failures <= 0:
                del self._records[("ip", client_address(ip))]
        self.succeeded(ip, account)

    def failed(self, ip: str, account: str) -> None:
        now = self.clock()
        account = account.lower()
        for key in (("pair", client_network(ip), account), ("ip", client_address(ip))):
            rec = self._records.setdefault(key, _Record())
            rec.failures += 1
            rec.last = now
        acc = self._records.setdefault(("account", account), _AccountRecord())
        if acc.failures < self.lockout_failures:
            acc.addresses.add(client_address(ip))
        acc.last = now
        if len(self._records) > 100_000:
            self._expire(now)

    def succeeded(self, ip: str, account: str) -> None:
        """A right password: the pair's failures are forgotten, this address no longer counts
        against the account, and the network becomes known-good for it."""
        account = account.lower()
        net = client_network(ip)
        self._records.pop(("pair", net, account), None)
        acc = self._records.get(("account", account))
        if acc is not None:
            acc.addresses.discard(client_address(ip))
            if not acc.addresses:
                del self._records[("account", account)]
        self._known_good[(account, net)] = None
        self._known_good.move_to_end((account, net))
        while len(self._known_good) > self.known_good_entries:
            self._known_good.popitem(last=False)

    def _expire(self, now: float) -> None:
        for key, rec in list(self._records.items()):
            if now - rec.last > self.lockout_seconds:
                del self._records[key]
