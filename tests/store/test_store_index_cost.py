"""Opening an indexed folder reads the index and the uidlist, never a message, and stats no
message file; refreshing an unchanged folder lists nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from mailsuite.store.folder import MTIME_SLACK_NS

REPO = Path(__file__).resolve().parents[2]

COUNTING_OPEN = r"""
import json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
root = Path(sys.argv[1])
touched = {"open": [], "stat": [], "listdir": []}

def in_maildir_subdir(path):
    parts = Path(os.fsdecode(path)).parts
    return "new" in parts or "cur" in parts or parts[-1] == "dovecot-uidlist"

def audit(event, args):
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        if in_maildir_subdir(args[0]):
            touched["open"].append(os.fsdecode(args[0]))
    elif event == "os.listdir":
        touched["listdir"].append(os.fsdecode(args[0]))

real_stat, real_lstat = os.stat, os.lstat
def counting_stat(path, *a, **kw):
    if not isinstance(path, int) and in_maildir_subdir(path) and Path(os.fsdecode(path)).name not in ("new", "cur"):
        touched["stat"].append(os.fsdecode(path))
    return real_stat(path, *a, **kw)
def counting_lstat(path, *a, **kw):
    if not isinstance(path, int) and in_maildir_subdir(path) and Path(os.fsdecode(path)).name not in ("new", "cur"):
        touched["stat"].append(os.fsdecode(path))
    return real_lstat(path, *a, **kw)
os.stat, os.lstat = counting_stat, counting_lstat
sys.addaudithook(audit)
folder = Store(root).mailbox("alice@example.test").folder("INBOX")
n = len(folder.messages)
opened = dict(touched)
touched = {"open": [], "stat": [], "listdir": []}
folder.refresh()
print(json.dumps({"messages": n, "open": opened, "refresh": touched}))
"""


def run_counting(root: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", COUNTING_OPEN, str(root), str(REPO)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_cold_open_reads_no_message_and_stats_no_message_file(store, mbox):
    for i in range(50):
        mbox.deliver(f"Subject: {i}\r\n\r\nbody\r\n".encode(), flags=["\\Seen"] if i % 2 else ())
    # Another program's file without sizes in its name: measured once, at the first scan.
    (mbox.path / "new" / "1700000000.M1P9.otherhost").write_bytes(b"Subject: x\n\ny\n")
    folder = mbox.folder("INBOX")
    assert len(folder.messages) == 51
    # Directory mtimes younger than the file system's tick cannot prove "unchanged"; a real
    # folder is opened long after its last delivery.
    time.sleep(MTIME_SLACK_NS / 1e9 + 0.2)
    folder.refresh()
    folder.save_index()
    result = run_counting(store.root)
    assert result["messages"] == 51
    # Not even dovecot-uidlist is read: it is unchanged since the index was saved.
    assert result["open"]["open"] == []
    assert all(p.endswith("dovecot-uidlist") for p in result["open"]["stat"])
    # Nothing changed: the directories are not even listed.
    assert result["open"]["listdir"] == []
    assert result["refresh"]["open"] == [] and result["refresh"]["listdir"] == []
    assert all(p.endswith("dovecot-uidlist") for p in result["refresh"]["stat"])


def test_the_counting_probe_does_see_message_reads(store, mbox):
    """The probe above can fail: without an index, the scan lists and stats the files."""
    mbox.deliver(b"Subject: x\r\n\r\ny\r\n")
    (mbox.path / "new" / "1700000000.M1P9.otherhost").write_bytes(b"Subject: x\n\ny\n")
    result = run_counting(store.root)
    assert result["messages"] == 2
    assert result["open"]["listdir"]
    assert any("otherhost" in p for p in result["open"]["open"])
    assert len(result["open"]["stat"]) >= 2
