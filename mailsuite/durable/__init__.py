"""One way to the disk: durable writes (tmp, write, fsync, rename, fsync the folder) with group
commit, reads and removals of message files, in a pool of its own for the reactor and blocking
in the caller's thread for the admin command."""

from mailsuite.durable.commit import GroupCommit
from mailsuite.durable.files import create_file, discard, fsync_dir, replace_file, write_synced
from mailsuite.durable.pool import PoolStopped, WorkerPool
from mailsuite.durable.service import DurableIO

__all__ = [
    "DurableIO",
    "GroupCommit",
    "PoolStopped",
    "WorkerPool",
    "create_file",
    "discard",
    "fsync_dir",
    "write_synced",
    "replace_file",
]
