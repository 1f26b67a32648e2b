"""Two processes delivering at once while two others index the folder: every message gets one
UID, the same in every process, and nothing is lost (dovecot-uidlist lock + append)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mailsuite.store import Store

REPO = Path(__file__).resolve().parents[2]

DELIVERER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
mbox = Store(Path(sys.argv[1])).mailbox("alice@example.test")
keys = [mbox.deliver(f"Subject: {sys.argv[3]} {i}\r\n\r\nbody\r\n".encode()) for i in range(int(sys.argv[4]))]
print(json.dumps(keys))
"""

INDEXER = r"""
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from mailsuite.store import Store
folder = Store(Path(sys.argv[1])).mailbox("alice@example.test").folder("INBOX")
seen = {}
stop = Path(sys.argv[3])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    done = stop.exists()
    folder.refresh(force=True)
    for m in folder.messages:
        if seen.setdefault(m.key, m.uid) != m.uid:
            print("UID CHANGED", m.key, file=sys.stderr)
            sys.exit(3)
    if done:
        break
    time.sleep(0.01)
folder.save_index()
print(json.dumps(seen))
"""


def test_two_writers_and_two_indexers_agree_on_unique_uids(store, mbox, tmp_path):
    stop = tmp_path / "stop"
    root, repo = str(store.root), str(REPO)
    indexers = [
        subprocess.Popen(
            [sys.executable, "-c", INDEXER, root, repo, str(stop)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", DELIVERER, root, repo, tag, "120"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("w1", "w2")
    ]
    delivered: list[str] = []
    for w in writers:
        out, err = w.communicate(timeout=90)
        assert w.returncode == 0, err
        delivered += json.loads(out)
    stop.touch()
    maps = []
    for ix in indexers:
        out, err = ix.communicate(timeout=90)
        assert ix.returncode == 0, err
        maps.append(json.loads(out))

    assert len(set(delivered)) == 240
    for seen in maps:
        assert set(seen) == set(delivered)  # nothing lost
        assert sorted(seen.values()) == list(range(1, 241))  # unique, no gaps
    assert maps[0] == maps[1]  # both processes gave every message the same UID
    # A third process, reading dovecot-uidlist without any index, agrees as well.
    (mbox.path / "mailsuite-index").unlink(missing_ok=True)
    folder = Store(store.root).mailbox("alice@example.test").folder("INBOX")
    assert {m.key: m.uid for m in folder.messages} == maps[0]
    lines = (mbox.path / "dovecot-uidlist").read_text().splitlines()[1:]
    assert len(lines) == 240 and len({line.split(" ", 1)[0] for line in lines}) == 240
    assert mbox.quota().used_messages == 240
