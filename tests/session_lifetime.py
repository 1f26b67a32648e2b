"""Checks that a front end's session object is freed by reference counting alone as soon as its
connection is gone (no cycle between protocol, session and what they hold)."""

from __future__ import annotations

import gc
import socket
import time
import weakref


def live_session(cls, is_live) -> weakref.ref:
    """A weak reference to the one session of class `cls` for which `is_live(session)`."""
    found = [o for o in gc.get_objects() if isinstance(o, cls) and is_live(o)]
    assert len(found) == 1, found
    ref = weakref.ref(found[0])
    del found
    return ref


def drop_and_wait_freed(sock: socket.socket, ref: weakref.ref, timeout: float = 5) -> None:
    """Close the client side; the session must go without the cycle collector (the caller has
    disabled it)."""
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()
    deadline = time.monotonic() + timeout
    while ref() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ref() is None, [type(r) for r in gc.get_referrers(ref())]
