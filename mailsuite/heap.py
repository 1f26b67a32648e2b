"""Freed memory goes back to the operating system soon after connections close.

glibc keeps the heap memory that Python frees for reuse: after hundreds of hostile connections'
input buffers are freed, the process would stay at its peak size for good. `malloc_trim`
returns the free pages; it walks the heap, so it runs at most once per `delay` seconds, on the
reactor, after connections went away. The heap is the process's, so the one pending trim is too.
"""

from __future__ import annotations

import ctypes

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
