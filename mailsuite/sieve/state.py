"""What Sieve remembers between deliveries, in the account's sieve folder: when a vacation
reply last went to a sender (RFC 5230 §4.2) and which duplicate ids were seen (RFC 7352).

One small file per (handle, sender) or id, named by a hash, holding its expiry time; the
file's mtime is when it was recorded.  Losing one (a crash before it reached the disk) costs
one more reply, never a message, so these writes are not fsynced.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from mailsuite.durable import discard
from mailsuite.durable.modes import make_private_dirs, private_opener

# Past this many files in one state folder, a write first removes the expired ones.
PRUNE_AT = 2000


class RunState:
    def __init__(self, folder: Path):
        self.vacation_dir = Path(folder) / "vacation"
        self.duplicate_dir = Path(folder) / "duplicate"

    def vacation_sent_within(self, key: str, recipient: str, period: int, now: float) -> bool:
        sent = _recorded(self.vacation_dir / _name(f"{key}\0{recipient.lower()}"))
        return sent is not None and now - sent < period

    def record_vacation(self, key: str, recipient: str, period: int, now: float) -> None:
        _record(self.vacation_dir, _name(f"{key}\0{recipient.lower()}"), now, period)

    def seen(self, key: str) -> float | None:
        return _recorded(self.duplicate_dir / _name(key))

    def record_duplicate(self, key: str, period: int, now: float) -> None:
        _record(self.duplicate_dir, _name(key), now, period)


def _name(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _recorded(path: Path) -> float | None:
    """When the record was made, or None when there is none or it has expired."""
    try:
        st = os.stat(path)
        expires = float(path.read_text("ascii") or 0)
    except (OSError, ValueError):
        return None
    if expires and time.time() > expires:
        return None
    return st.st_mtime


def _record(folder: Path, name: str, now: float, period: int) -> None:
    make_private_dirs(folder)
    tmp = folder / f".{name}.{os.getpid()}"
    with open(tmp, "w", opener=private_opener) as f:
        f.write(str(int(now + period)))
    os.utime(tmp, (now, now))
    os.replace(tmp, folder / name)
    try:
        if len(os.listdir(folder)) > PRUNE_AT:
            _prune(folder)
    except OSError:
        pass


def _prune(folder: Path) -> None:
    now = time.time()
    for entry in os.scandir(folder):
        try:
            expires = float(Path(entry.path).read_text("ascii") or 0)
        except (OSError, ValueError):
            continue
        if expires < now:
            discard(entry.path)
