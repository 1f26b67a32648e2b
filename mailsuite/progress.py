"""The admin command's progress bar: drawn in place on a terminal, nothing on a pipe (where
only the summary line is wanted). Imports, exports, backups and junk retraining all use it."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """A one-line bar redrawn in place on a TTY (at most ~10 times a second)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.width = width
        self.label = ""
        self.total = 0
        self.done = 0
        self._last = 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        total = max(self.total, 1)
        filled = min(self.width, self.width * self.done // total)
        bar = "#" * filled + "-" * (self.width - filled)
        label = self.label if len(self.label) <= 30 else "…" + self.label[-29:]
        self.stream.write(f"\r{label:<30} [{bar}] {self.done}/{self.total}\x1b[K")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A line that must stay (a skipped message), printed above the bar."""
        if self.tty:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._draw(force=True)

    def finish(self, summary: str | None = None, out: TextIO | None = None) -> None:
        """Clear the bar and print the summary, if any (to stdout: it is the command's
        result)."""
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        if summary is None:
            return
        out = out if out is not None else sys.stdout
        out.write(summary + "\n")
        out.flush()
