"""What a transfer did, counted in TransferStats so every importer and exporter reports the same
way (the bar itself is `mailsuite.progress.Progress`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TransferStats:
    """What a run did: copied, already present, skipped (with reasons), per folder."""

    copied: int = 0
    copied_bytes: int = 0
    present: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    folders: set[str] = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def summary(self, verb: str = "imported", noun: str = "message") -> str:
        secs = time.monotonic() - self.started
        mb = self.copied_bytes / (1024 * 1024)
        what = f"{verb} {self.copied} {noun}{'s' if self.copied != 1 else ''}"
        if noun == "message":
            what += f" ({mb:.1f} MiB) in {len(self.folders)} folder"
            what += "s" if len(self.folders) != 1 else ""
        parts = [what]
        if self.present:
            parts.append(f"{self.present} already present")
        parts.append(f"{len(self.skipped)} skipped")
        return ", ".join(parts) + f", {secs:.1f}s"
