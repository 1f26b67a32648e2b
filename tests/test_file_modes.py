"""Everything mailsuite writes is 0600 and every folder 0700, whatever the umask it was started
with: `init`, admin commands and `mailsuite serve` run here with umask 000, then the whole data
folder is walked."""

from __future__ import annotations

import imaplib
import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from mailsuite.durable.modes import create_private_file, make_private_dirs

MESSAGE = b"From: Ext <ext@remote.test>\nTo: alice@example.test\nSubject: modes\n\nhello\n"


def with_umask_000(args: list[str]) -> list[str]:
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "mailsuite.cli", *args])
    return ["sh", "-c", f"umask 000; exec {command}"]


def admin(conf: Path, *args: str, stdin: bytes = b"") -> None:
    result = subprocess.run(
        with_umask_000(["--config", str(conf), *args]), input=stdin, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()


def modes_under(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything below `root`."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def wrong_modes(found: dict[str, int], root: Path) -> list[str]:
    wrong = []
    for rel, mode in found.items():
        path = root / rel
        if not path.exists():
            continue  # removed since (tmp files, a closed WAL)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong.append(f"{rel}: {mode:o}")
    return wrong


def imap_session(port: int) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port)
    try:
        imap.login("alice@example.test", "secret-pw-1")
        imap.select("INBOX")
        imap.fetch("1", "(BODYSTRUCTURE ENVELOPE BODY.PEEK[])")  # the parsed cache
        imap.store("1", "+FLAGS", "(\\Seen $Label1)")  # dovecot-keywords
        imap.create("Projects")
        imap.subscribe("Projects")
        imap.append("Projects", None, None, MESSAGE.replace(b"\n", b"\r\n"))
        imap.select("Projects")
        imap.fetch("1", "(BODYSTRUCTURE)")
        imap.logout()
    except Exception:
        imap.shutdown()
        raise


def test_everything_written_is_0600_and_0700_under_umask_000(tmp_path):
    site = tmp_path / "site"
    admin(tmp_path / "unused.toml", "init", str(site))
    conf = site / "mailsuite.toml"
    text = conf.read_text()
    text = re.sub(r'"127\.0\.0\.1:\d+"', '"127.0.0.1:0"', text)
    text = text.replace('data_dir = "data"\n', 'data_dir = "data"\nallow_root = true\n')
    conf.write_text(text.replace('plaintext = "never"', 'plaintext = "loopback"'))
    admin(conf, "user", "add", "alice@example.test", "--password-stdin", stdin=b"secret-pw-1\n")
    admin(conf, "alias", "add", "postmaster@example.test", "alice@example.test")
    admin(conf, "deliver", "--to", "alice@example.test", stdin=MESSAGE)
    admin(conf, "deliver", "--to", "someone@remote.test", stdin=MESSAGE)  # into the spool
    admin(conf, "user", "quota", "alice@example.test", "--bytes", "10M")

    server = subprocess.Popen(
        with_umask_000(["--config", str(conf), "serve"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    data = site / "data"
    try:
        port = None
        seen = []
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"listening for imap on 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
        assert port, "".join(seen)
        imap_session(port)
        running = modes_under(data)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    after = modes_under(data)

    names = {Path(rel).name for rel in running | after}
    for expected in (
        "accounts.sqlite",
        "accounts.sqlite-wal",
        "accounts.sqlite-shm",
        "dovecot-uidlist",
        "dovecot-uidvalidity",
        "dovecot-keywords",
        "mailsuite-index",
        "mailsuite-parsed.sqlite",
        "maildirsize",
        "subscriptions",
        "maildirfolder",
        "entries",
    ):
        assert expected in names, expected
    assert wrong_modes(running, data) == []
    assert wrong_modes(after, data) == []
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    key = site / "certs" / "mail.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


def test_private_dirs_are_0700_at_every_level_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        created = make_private_dirs(tmp_path / "a" / "b" / "c")
        create_private_file(tmp_path / "a" / "f")
    finally:
        os.umask(old)
    assert [p.name for p in created] == ["a", "b", "c"]
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "f").stat().st_mode) == 0o600
    assert make_private_dirs(tmp_path / "a" / "b") == []
