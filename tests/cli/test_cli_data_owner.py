"""Run as root against a data folder that another account owns (a server run by that account,
no `user` in the config), admin commands create their files as that account: a root-owned
file there would make the server answer 451 later."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import base_config, toml_dumps
from tests.test_privileges import owners_under, system_user  # noqa: F401  (a fixture)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (started as root)")

MSG = b"From: a@remote.test\nMessage-ID: <1@remote.test>\nSubject: hi\n\nbody\n"


def admin(conf: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
def site():
    # Outside pytest's 0700 temporary folder, which the account could not enter.
    root = Path(tempfile.mkdtemp(prefix="mailsuite-owner-", dir="/tmp"))
    os.chmod(root, 0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_admin_commands_as_root_create_files_as_the_data_folders_owner(site, system_user):  # noqa: F811
    uid, gid = system_user.pw_uid, system_user.pw_gid
    data = site / "data"
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)
    conf = site / "mailsuite.toml"
    raw = base_config(site)
    del raw["allow_root"]  # as a server run by its own account has it
    conf.write_text(toml_dumps(raw))
    mbox = site / "old.mbox"
    mbox.write_bytes(b"From a@remote.test Mon Jan  2 03:04:05 2023\n" + MSG)
    os.chmod(mbox, 0o644)
    steps = [
        ("user", "add", "alice@example.test", "--password-stdin"),
        ("domain", "add", "new.test"),
        ("alias", "add", "team@example.test", "alice@example.test"),
        ("deliver", "--to", "alice@example.test"),
        ("deliver", "--to", "x@remote.test"),
        ("import", "mbox", str(mbox), "--user", "alice@example.test", "--folder", "Old"),
        ("dkim", "keygen", "example.test", "--type", "ed25519"),
        ("user", "quota", "alice@example.test", "--messages", "100"),
    ]
    for args in steps:
        stdin = b"correct-horse-battery\n" if "--password-stdin" in args else MSG
        result = admin(conf, *args, stdin=stdin)
        assert result.returncode == 0, (args, result.stderr.decode())
    # A source only root can read is refused in words: the command reads as the account.
    private = site / "private"
    private.mkdir(mode=0o700)
    shutil.copy(mbox, private / "old.mbox")
    result = admin(
        conf, "import", "mbox", str(private / "old.mbox"), "--user", "alice@example.test"
    )
    assert result.returncode == 77, result.stderr.decode()
    assert f"permission denied (reading as {system_user.pw_name})" in result.stderr.decode()
    owners = owners_under(data)
    names = {o[0] for o in owners}
    assert {"accounts.sqlite", "mail/example.test/alice/cur", "queue"} <= names
    assert any(n.startswith("dkim/example.test/") for n in names)
    assert any(n.startswith("mail/example.test/alice/.Old/") for n in names)
    assert {(u, g) for _, u, g in owners} == {(uid, gid)}, sorted(
        o for o in owners if o[1:] != (uid, gid)
    )


def test_a_data_folder_root_owns_stays_roots(site):
    conf = site / "mailsuite.toml"
    conf.write_text(toml_dumps(base_config(site)))
    result = admin(conf, "domain", "add", "new.test")
    assert result.returncode == 0, result.stderr.decode()
    assert {(u, g) for _, u, g in owners_under(site / "data")} == {(0, 0)}
