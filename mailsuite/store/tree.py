"""A user's folder tree as one snapshot: folder names, subscriptions, special-use roles.

Reading it lists the Maildir root and looks at every `.Folder` in it; an account of thousands
of folders takes tens of milliseconds, which the reactor must not spend.  So the tree is read
in the durable pool (`read_tree`), and a snapshot is kept with the stamp it was read under:
the Maildir root's mtime (a folder made, removed or renamed, and the subscription and role
files, which are replaced by a rename in the root) and those two files' own signatures (a
program that rewrites one in place).  Three stats on the reactor tell whether it still holds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from mailsuite.store import names

SPECIAL_USE_FILE = "mailsuite-special-use"
SUBSCRIPTIONS_FILE = "subscriptions"
# A directory's mtime ticks coarsely (ext4: the kernel's jiffy clock): a change within the
# tick of the snapshot would leave the same mtime, so a stamp this young proves nothing yet.
STAMP_SLACK_NS = 2_000_000_000


@dataclass(frozen=True)
class FolderTree:
    """What LIST and LSUB answer from: `names` with INBOX first, the rest sorted."""

    names: tuple[str, ...]
    subscribed: tuple[str, ...]
    uses: dict[str, str]
    stamp: tuple


def tree_stamp(root: str) -> tuple:
    """The signature a snapshot of the tree under `root` was read under (three stats)."""
    sig = []
    for path in (root, f"{root}/{SUBSCRIPTIONS_FILE}", f"{root}/{SPECIAL_USE_FILE}"):
        try:
            st = os.stat(path)
        except OSError:
            sig.append(None)
            continue
        sig.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(sig)


def trusted(stamp: tuple) -> bool:
    """Whether a snapshot taken under `stamp` may be used while the stamp is unchanged: every
    mtime in it is older than the clock's tick."""
    now = time.time_ns()
    return all(part is None or now - part[2] > STAMP_SLACK_NS for part in stamp)


def list_folder_names(root: str) -> list[str]:
    """IMAP names of the folders under `root`, INBOX first, the rest sorted; blocking."""
    found = []
    try:
        entries = os.listdir(root)
    except FileNotFoundError:
        return [names.INBOX]
    for entry in entries:
        name = names.from_dirname(entry)
        if name and os.path.isdir(f"{root}/{entry}/cur"):
            found.append(name)
    found.sort()
    return [names.INBOX] + [n for n in found if n != names.INBOX]


def read_special_use(root: str) -> dict[str, str]:
    uses = {}
    try:
        with open(f"{root}/{SPECIAL_USE_FILE}", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return uses
    for line in text.splitlines():
        name, _, role = line.rpartition("\t")
        if name and role:
            uses[name] = role
    return uses


def read_subscriptions(root: str) -> list[str]:
    try:
        with open(f"{root}/{SUBSCRIPTIONS_FILE}", encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    lines = text.splitlines()
    if lines and lines[0] == "V\t2":
        # Dovecot 2.3's version 2 file: "V\t2", an empty line, then one name per line with
        # a tab between hierarchy levels.
        return [line.replace("\t", names.SEPARATOR) for line in lines[2:] if line]
    return [line for line in lines if line and not line.startswith("V\t")]


def read_tree(root: str) -> FolderTree:
    """The whole tree read from disk (blocking: the durable pool).  The stamp is taken
    first, so a change made while reading shows as a stale snapshot, never a fresh one."""
    stamp = tree_stamp(root)
    return FolderTree(
        tuple(list_folder_names(root)),
        tuple(read_subscriptions(root)),
        read_special_use(root),
        stamp,
    )
