"""Which file-system work runs on the reactor thread, seen through CPython's audit hooks.

The reactor must never wait on the disk: writes, renames, removals, directory listings and
tree walks go to the durable-I/O service.  `ReactorDiskWatch` records every audit event of
that kind raised on the reactor thread while its window is open, with the stack that raised
it.  An audit hook cannot be removed, so one hook is installed for the whole test process and
does nothing (one comparison) while no window is open.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

# The audit events (CPython's table) that change the file system or list it.  "open" counts
# only when it writes or creates; a read opens a file the reactor reads anyway (small files of
# an index already loaded), which is not what the rule is about.
CHANGING = frozenset(
    {
        "os.mkdir",
        "os.rename",
        "os.remove",
        "os.rmdir",
        "os.link",
        "os.symlink",
        "os.truncate",
        "os.chmod",
        "os.chown",
        "os.utime",
        "shutil.rmtree",
        "shutil.copyfile",
        "shutil.copytree",
        "shutil.move",
    }
)
LISTING = frozenset({"os.listdir", "os.scandir", "os.walk", "os.fwalk", "glob.glob"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


@dataclass
class DiskEvent:
    event: str
    path: str
    stack: list[str]

    def __str__(self) -> str:
        return f"{self.event} {self.path}\n" + "".join(self.stack)


def _writes(args) -> bool:
    """Whether an "open" event's (path, mode, flags) opens for writing."""
    _, mode, flags = args
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


class ReactorDiskWatch:
    """The process's one hook; `window(thread)` records what `thread` does meanwhile."""

    _installed: ReactorDiskWatch | None = None

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.events: list[DiskEvent] = []
        self.reads = False  # record "open" for reading too (the diagnostic's wider net)

    @classmethod
    def get(cls) -> ReactorDiskWatch:
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    def _hook(self, event: str, args) -> None:
        thread = self.thread
        if thread is None or threading.current_thread() is not thread:
            return
        if event == "open":
            if not self.reads and not _writes(args):
                return
        elif event not in CHANGING and event not in LISTING:
            return
        path = args[0] if args else None
        # a descriptor (os.scandir(fd) inside shutil.rmtree) or None: shown as it is; a hook
        # must never raise into the call it watches
        where = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
        stack = traceback.format_stack(sys._getframe(1), limit=14)
        self.events.append(DiskEvent(event, where, stack))

    @contextmanager
    def window(self, thread: threading.Thread, reads: bool = False):
        self.events = []
        self.reads = reads
        self.thread = thread
        try:
            yield self.events
        finally:
            self.thread = None


def reactor_thread() -> threading.Thread:
    """The thread tests/conftest.py runs the reactor in."""
    for thread in threading.enumerate():
        if thread.name == "reactor":
            return thread
    raise RuntimeError("no reactor thread")
