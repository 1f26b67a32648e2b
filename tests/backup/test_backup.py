"""`mailsuite backup` of a server under SMTP load, and `mailsuite restore` into a new data
folder that a new server then serves: every message acknowledged before the backup started is
there with its UID, under the same UIDVALIDITY."""

from __future__ import annotations

import imaplib
import json
import os
import pty
import re
import smtplib
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import (
    DEFAULT_PASSWORD,
    REPO,
    base_config,
    client_tls_context,
    run_cli,
    toml_dumps,
)

ALICE = "alice@example.test"


def message(tag: str) -> bytes:
    return (
        f"From: bob@example.test\r\nTo: {ALICE}\r\nSubject: {tag}\r\n"
        f"Message-ID: <{tag}@example.test>\r\n\r\nbody of {tag}\r\n"
    ).encode()


class SmtpLoad(threading.Thread):
    """Sends one message after another over one SMTP session; `acked` holds the Message-IDs
    the server has answered 250 to, in order."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self):
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as s:
                n = 0
                while not self.stop.is_set():
                    tag = f"load{n}"
                    s.sendmail("bob@example.test", [ALICE], message(tag))
                    self.acked.append(f"<{tag}@example.test>")
                    n += 1
        except BaseException as e:  # reported by the test
            self.error = e


def imap_login(port: int) -> imaplib.IMAP4_SSL:
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_tls_context())
    imap.login(ALICE, DEFAULT_PASSWORD)
    return imap


def folder_state(imap: imaplib.IMAP4_SSL, folder: str) -> tuple[int, dict[str, int]]:
    """(UIDVALIDITY, {Message-ID: UID}) of a folder, over IMAP."""
    typ, _ = imap.select(folder, readonly=True)
    assert typ == "OK"
    uidvalidity = int(imap.response("UIDVALIDITY")[1][0])
    typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    uids = {}
    for item in data:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            mid = item[1].decode().split(":", 1)[1].strip()
            uids[mid] = uid
    return uidvalidity, uids


def modes(root: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of everything under root."""
    out = set()
    for top, dirs, files in os.walk(root):
        for d in dirs:
            out.add(("dir", stat.S_IMODE(os.lstat(os.path.join(top, d)).st_mode)))
        for f in files:
            out.add(("file", stat.S_IMODE(os.lstat(os.path.join(top, f)).st_mode)))
    return out


def test_backup_under_smtp_load_restores_every_acknowledged_message_with_its_uid(
    server_factory, tmp_path
):
    srv = server_factory()
    srv.add_user(ALICE)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        for n in range(40):
            s.sendmail("bob@example.test", [ALICE], message(f"first{n}"))
    imap = imap_login(srv.port("imaps"))
    imap.create("Archive")
    imap.select("INBOX")
    # Flags renamed into cur/, one message moved: state the backup must carry.
    imap.store("1:10", "+FLAGS", "(\\Seen \\Flagged)")
    imap.uid("MOVE", "40", "Archive")
    imap.create("Empty")

    load = SmtpLoad(srv.port("smtp"))
    load.start()
    while len(load.acked) < 20:
        assert load.error is None, load.error
        time.sleep(0.01)
    during_load = len(load.acked)
    acked_before = set(load.acked) | {f"<first{n}@example.test>" for n in range(39)}
    # The IMAP session takes notice of what has arrived (UIDs given) just before the backup.
    imap.noop()
    dest = tmp_path / "backups"
    flagger = threading.Thread(
        target=lambda: imap.store("11:30", "+FLAGS", "(\\Answered)"), daemon=True
    )
    flagger.start()  # flag renames while the backup lists and links
    done = srv.cli("backup", str(dest))
    flagger.join(30)
    load.stop.set()
    load.join(30)
    assert load.error is None, load.error
    assert done.returncode == 0, done.stderr.decode()
    assert len(load.acked) > during_load + 5, "the load did not go on during the backup"
    assert b"backup " in done.stdout and b"messages" in done.stdout
    imap.logout()

    imap = imap_login(srv.port("imaps"))
    before = {f: folder_state(imap, f) for f in ("INBOX", "Archive")}
    imap.logout()
    snapshots = [p for p in dest.iterdir() if p.is_dir()]
    assert len(snapshots) == 1 and (dest / "latest").read_text().strip() == snapshots[0].name
    snap = snapshots[0]
    manifest = json.loads((snap / "manifest.json").read_text())
    assert "accounts.sqlite" in manifest["databases"]
    assert not list(snap.rglob("*-wal")) and not list(snap.rglob("*-shm"))
    assert modes(snap) <= {("dir", 0o700), ("file", 0o600)}
    with sqlite3.connect(snap / "data" / "accounts.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restore into a new data folder, then serve it.
    new_root = tmp_path / "restored"
    new_root.mkdir()
    conf = new_root / "mailsuite.toml"
    conf.write_text(toml_dumps(base_config(new_root)))
    restored = run_cli("--config", str(conf), "restore", str(dest))
    assert restored.returncode == 0, restored.stderr.decode()
    assert modes(new_root / "data") <= {("dir", 0o700), ("file", 0o600)}
    srv2 = server_factory("restored", data_dir=str(new_root / "data"))
    imap = imap_login(srv2.port("imaps"))
    after = {f: folder_state(imap, f) for f in ("INBOX", "Archive")}
    typ, listing = imap.list()
    assert any(b'"Empty"' in line or b" Empty" in line for line in listing)
    imap.logout()

    for folder in ("INBOX", "Archive"):
        assert after[folder][0] == before[folder][0], f"UIDVALIDITY of {folder}"
    present = set(after["INBOX"][1])
    missing = acked_before - present
    assert not missing, f"{len(missing)} acknowledged messages missing, e.g. {sorted(missing)[:3]}"
    for mid in acked_before:
        assert after["INBOX"][1][mid] == before["INBOX"][1][mid], mid
    assert after["Archive"][1] == before["Archive"][1] == {"<first39@example.test>": 1}


def test_second_backup_links_unchanged_messages_from_the_first(server_factory, tmp_path):
    srv = server_factory()
    srv.add_user(ALICE)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        for n in range(5):
            s.sendmail("bob@example.test", [ALICE], message(f"m{n}"))
    dest = tmp_path / "backups"
    assert srv.cli("backup", str(dest)).returncode == 0
    first = dest / (dest / "latest").read_text().strip()
    imap = imap_login(srv.port("imaps"))
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Seen)")  # renamed: same message, new name
    imap.logout()
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        s.sendmail("bob@example.test", [ALICE], message("m5"))
    time.sleep(0.01)
    second_run = srv.cli("backup", str(dest))
    assert second_run.returncode == 0, second_run.stderr.decode()
    assert b"5 unchanged since " + first.name.encode() in second_run.stdout
    second = dest / (dest / "latest").read_text().strip()
    assert second != first
    m1 = json.loads((first / "manifest.json").read_text())["messages"]
    m2 = json.loads((second / "manifest.json").read_text())["messages"]
    assert len(m1) == 5 and len(m2) == 6
    inodes1 = {os.stat(first / "data" / rel).st_ino for rel in m1}
    inodes2 = {os.stat(second / "data" / rel).st_ino for rel in m2}
    assert inodes1 < inodes2  # the five earlier messages are the same files
    assert any(rel.endswith(":2,S") for rel in m2)


def test_restore_refuses_a_data_folder_that_is_not_empty(server_factory, tmp_path):
    srv = server_factory()
    srv.add_user(ALICE)
    dest = tmp_path / "backups"
    assert srv.cli("backup", str(dest)).returncode == 0
    done = srv.cli("restore", str(dest))  # onto the running server's own data
    assert done.returncode == 73
    assert b"is not empty" in done.stderr and done.stdout == b""


def test_restore_refuses_what_is_not_a_backup(tmp_path):
    conf = tmp_path / "mailsuite.toml"
    conf.write_text(toml_dumps(base_config(tmp_path)))
    (tmp_path / "junk").mkdir()
    done = run_cli("--config", str(conf), "restore", str(tmp_path / "junk"))
    assert done.returncode == 65
    assert b"not a mailsuite backup" in done.stderr
    assert not (tmp_path / "data" / "mail").exists()


def test_backup_draws_a_progress_bar_on_a_terminal_only(server_factory, tmp_path):
    srv = server_factory()
    srv.add_user(ALICE)
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(srv.config_path)]
            + ["backup", str(tmp_path / "b")],
            stdout=subprocess.PIPE,
            stderr=slave,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            timeout=60,
        )
        os.close(slave)
        slave = None
        drawn = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert done.returncode == 0
    assert re.search(rb"\rbackup +\[#+\] \d+/\d+", drawn), drawn
    assert done.stdout.startswith(b"backup ") and b"\r" not in done.stdout
    piped = srv.cli("backup", str(tmp_path / "c"))
    assert piped.returncode == 0 and piped.stderr == b""
