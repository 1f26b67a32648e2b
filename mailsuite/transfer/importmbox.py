"""`mailsuite import mbox`: every message of one mbox file into one folder of a user.

Flags come from Status/X-Status/X-Keywords (and Thunderbird's X-Mozilla-Status); the internal
date from the From_ line, else the Date: header. A message the folder holds already (same
Message-ID and body) is counted as present, not copied again, so a run can be repeated.
"""

from __future__ import annotations

from pathlib import Path

from mailsuite.progress import Progress
from mailsuite.store import Mailbox
from mailsuite.transfer.mboxfile import date_from_header, read_mbox
from mailsuite.transfer.progress import TransferStats
from mailsuite.transfer.target import ImportTarget


def count_messages(path: Path) -> int:
    """How many From_ lines start a message (for the progress bar); one cheap pass."""
    n = 0
    prev_blank = True
    with open(path, "rb") as f:
        for line in f:
            if prev_blank and line.startswith(b"From "):
                n += 1
            prev_blank = line in (b"\n", b"\r\n")
    return n


def import_mbox(
    path: Path, mailbox: Mailbox, folder: str = "INBOX", progress: Progress | None = None
) -> TransferStats:
    """Import one mbox file; a bad message is reported and skipped, never fatal."""
    progress = progress or Progress()
    stats = TransferStats()
    target = ImportTarget(mailbox, stats, progress)
    name = target.ensure_folder(folder)
    if name is None:
        return stats
    progress.start(f"{path.name} → {name}", count_messages(path))
    with open(path, "rb") as f:
        for msg in read_mbox(f):
            if not target.already_present(name, msg.data):
                date = msg.date if msg.date is not None else date_from_header(msg.data)
                what = f"message {msg.index} of {path.name}"
                target.deliver(what, msg.data, name, msg.flags, date)
            progress.advance()
    return stats
