"""When to ask the CA for a certificate: pure arithmetic on times, no clock and no I/O, so the
renewal window and the back-off are tested without waiting for either.

A certificate is renewed when 30 days of it are left, or a third of its lifetime for a short-lived
one (so a 90-day Let's Encrypt certificate at day 60, a 6-day one after 4 days). The server looks
twice a day whether that time has come (and at the time itself). A failed attempt is retried
after a delay that doubles from RETRY_FIRST up to RETRY_MAX, each drawn at random from its upper
half, so a CA that is down or refusing is never asked in a tight loop, and many servers that
failed together do not come back together.
"""

from __future__ import annotations

import random

DAY = 86400.0
RENEW_BEFORE = 30 * DAY
CHECK_INTERVAL = DAY / 2
RETRY_FIRST = 600.0
RETRY_MAX = DAY


def renewal_time(not_before: float, not_after: float) -> float:
    """When a certificate valid from `not_before` to `not_after` should be renewed."""
    lifetime = max(0.0, not_after - not_before)
    return not_after - min(RENEW_BEFORE, lifetime / 3)


def retry_delay(failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `failures`-th failure in a row (1 for the first)."""
    ceiling = min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def next_attempt(
    now: float,
    not_before: float | None,
    not_after: float | None,
    failures: int,
    retry_at: float,
) -> float:
    """When to try next: now without a certificate (unless a failure's back-off runs), at its
    renewal time otherwise, and never before a failure's back-off has passed."""
    if not_after is None:
        due = now
    else:
        due = renewal_time(not_after if not_before is None else not_before, not_after)
    if failures:
        due = max(due, retry_at)
    return due


def next_wake(now: float, due: float) -> float:
    """The server looks again at the latest after CHECK_INTERVAL (twice a day), so a
    certificate replaced on disk or a changed clock is noticed."""
    return min(due, now + CHECK_INTERVAL)
