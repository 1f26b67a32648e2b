"""The process's memory: freed memory goes back to the operating system soon after connections
close, and the cycle collector runs seldom enough not to stall every client.

glibc keeps the heap memory that Python frees for reuse: after hundreds of hostile connections'
input buffers are freed, the process would stay at its peak size for good. `malloc_trim`
returns the free pages; it walks the heap, so it runs at most once per `delay` seconds, on the
reactor, after connections went away. The heap is the process's, so the one pending trim is too.
"""

from __future__ import annotations

import ctypes
import gc

from twisted.internet import reactor


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):  # not glibc: nothing to do
        return None


_TRIM = _malloc_trim()
_pending = []  # the scheduled trim, if any


def release_soon(delay: float = 1.0) -> None:
    """A connection has gone: trim the heap within `delay` seconds (once for many closes)."""
    if _TRIM is None or _pending:
        return
    _pending.append(reactor.callLater(delay, _trim))


def _trim() -> None:
    _pending.clear()
    _TRIM(0)


# Objects allocated (net) between two collections of the youngest generation, and collections
# of each generation between two of the next.  Python's defaults (700, 10, 10) suit small
# programs; a server holding the indexes of big folders (a few objects per message) spent its
# time in full collections that found nothing: 16 pauses of 30-240 ms while one client worked
# through a folder of 50,000 messages (bench/big_folder.py), each pause holding every other
# client; with these, 6 pauses.  The young generation stays small: at most this many objects
# of cyclic garbage wait for their collection.
COLLECTOR_THRESHOLDS = (50_000, 50, 100)


def tune_collector() -> None:
    """Set the cycle collector's thresholds for a long-running server (at start)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
