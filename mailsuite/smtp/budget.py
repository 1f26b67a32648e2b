"""The message content SMTP sessions hold in memory, counted server-wide and per client address.

A session keeps a message's DATA/BDAT content in memory until the end of data and its
delivery; `[smtp] max_message_size` bounds one message, the connection limits bound the
sessions, but their product is more than a machine has: twenty connections from one address,
each holding an unfinished 40 MB body, pin 800 MB.  So every session charges what it holds,
as it holds it, to one `BodyBudget`, and gives it back when the transaction ends.  Two bounds:
the total over all sessions, and a share per client address for sessions that have not logged
in (a logged-in user counts toward the total only: the account is known and can be stopped,
and many users behind one NAT address must not crowd each other out).  Content that would
pass a bound is refused with a temporary failure (452 4.3.1, RFC 3463): the sender retries
later and nothing is lost, as with Postfix's queue_minfree.
"""

from __future__ import annotations

from collections import Counter

from mailsuite.config import Config

# One octet is room enough to start a body: a refusal "before it sends a body" happens only
# when the share or the total is already full.
ANY_ROOM = 1


class BodyBudget:
    """The bytes of message content all SMTP sessions hold now, bounded in total and per
    client address (`None`: a logged-in session, counted toward the total only)."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip = per_ip
        self.held = 0
        self._by_ip: Counter[str] = Counter()

    @classmethod
    def from_config(cls, config: Config) -> BodyBudget:
        """`[limits] message_memory` and `message_memory_per_ip` (0: twice the largest
        message, so that one client can send two at once).  Neither is ever less than one
        message of `[smtp] max_message_size`: bounds below it would refuse every large
        message for ever, with a temporary failure the sender retries until it gives up."""
        limits = config.limits
        largest = config.smtp.max_message_size
        per_ip = max(limits.message_memory_per_ip or 2 * largest, largest)
        return cls(max(limits.message_memory, per_ip), per_ip)

    def held_by(self, ip: str) -> int:
        """What the sessions of client address `ip` that have not logged in hold now."""
        return self._by_ip.get(ip, 0)

    def has_room(self, ip: str | None, octets: int = ANY_ROOM) -> bool:
        """Whether `octets` more fit within the total and (for `ip`) the address's share."""
        if self.held + octets > self.total:
            return False
        return ip is None or self._by_ip.get(ip, 0) + octets <= self.per_ip

    def charge(self, ip: str | None) -> BodyCharge:
        """A session's account with the budget, holding nothing yet."""
        return BodyCharge(self, ip)

    def _change(self, ip: str | None, delta: int) -> None:
        self.held += delta
        if ip is not None:
            left = self._by_ip[ip] + delta
            if left:
                self._by_ip[ip] = left
            else:
                del self._by_ip[ip]


class BodyCharge:
    """What one session holds now: set to the size of its content after each piece."""

    def __init__(self, budget: BodyBudget, ip: str | None) -> None:
        self.budget = budget
        self.ip = ip
        self.held = 0

    def hold(self, octets: int) -> bool:
        """Charge `octets` in all (less than before always fits); False, changing nothing,
        when the growth would pass the share or the total."""
        grow = octets - self.held
        if grow > 0 and not self.budget.has_room(self.ip, grow):
            return False
        if grow:
            self.budget._change(self.ip, grow)
            self.held = octets
        return True

    def release(self) -> None:
        """Give back everything (again: nothing happens)."""
        self.hold(0)
