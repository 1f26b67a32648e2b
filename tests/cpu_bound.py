"""A bound on the CPU time a piece of pure work may take in a test.

Work that grows with the square of hostile input takes minutes where the linear version takes
milliseconds, so a generous bound of a few CPU seconds tells them apart without timing anything
tightly, and a test of the quadratic version ends at the bound instead of running on.  The
bound is process CPU time (SIGPROF), so a busy machine does not trip it, and it leaves alone
the SIGALRM that pytest-timeout uses.  The regular expression engine checks for signals as it
runs, so the bound stops a runaway pattern too.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class TooSlow(AssertionError):
    """The work used more CPU time than its bound."""


@contextlib.contextmanager
def cpu_seconds(bound: float) -> Iterator[None]:
    """Run the block with at most `bound` seconds of the process's CPU time."""

    def expire(signum, frame):
        raise TooSlow(f"more than {bound} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    signal.setitimer(signal.ITIMER_PROF, bound)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
