"""`mailsuite setup` as root on a real system, inside a private mount namespace whose /etc,
/var/lib and /var/log are scratch copies: the system user is really created, the owners really
applied, the data made as that user, and a second run changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

SETUP = (
    f"{sys.executable} -m mailsuite.cli setup --hostname mail.example.org "
    "--domain example.org --admin you@example.org --exec " + sys.executable
)
PATHS = (
    "/etc/mailsuite",
    "/etc/mailsuite/mailsuite.toml",
    "/etc/systemd/system/mailsuite.service",
    "/var/lib/mailsuite",
    "/var/log/mailsuite",
    "/var/lib/mailsuite/accounts.sqlite",
    "/var/lib/mailsuite/dkim/example.org/ed.key",
    "/var/lib/mailsuite/certs/mail.key",
    "/var/lib/mailsuite/mail/example.org/you/cur",
)


def in_namespace(tmp_path, script: str) -> subprocess.CompletedProcess:
    """Run `script` (sh) as root in a private mount namespace over scratch system folders."""
    etc, lib, logs = tmp_path / "etc", tmp_path / "var-lib", tmp_path / "var-log"
    if not etc.exists():
        shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True)
        for folder in (lib, logs):
            folder.mkdir()
            folder.chmod(0o755)  # as on a system, whatever umask an earlier test left
    mounts = (
        f"mount --bind {etc} /etc && mount --bind {lib} /var/lib && "
        f"mount --bind {logs} /var/log && cd / && "
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", mounts + script],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=120,
    )


def test_setup_as_root_creates_the_user_and_applies_the_owners(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux)")
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    done = in_namespace(
        tmp_path,
        f"{SETUP} && getent passwd mailsuite && stat -c 'STAT %U:%G %a %n' {' '.join(PATHS)}",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "created  user mailsuite (system account, no login)" in out
    assert "owners to apply" not in out  # applied, not listed
    passwd = next(line for line in out.splitlines() if line.startswith("mailsuite:"))
    assert passwd.endswith(":/var/lib/mailsuite:/usr/sbin/nologin")
    assert int(passwd.split(":")[2]) < 1000  # a system account
    stats = [line.split()[1:] for line in out.splitlines() if line.startswith("STAT ")]
    owners = {path: [owner, mode] for owner, mode, path in stats}
    assert owners["/etc/mailsuite"] == ["root:mailsuite", "750"]
    assert owners["/etc/mailsuite/mailsuite.toml"] == ["root:mailsuite", "640"]
    assert owners["/etc/systemd/system/mailsuite.service"] == ["root:root", "644"]
    assert owners["/var/lib/mailsuite"] == ["mailsuite:mailsuite", "750"]
    assert owners["/var/log/mailsuite"] == ["mailsuite:mailsuite", "750"]
    # Made by the service user itself, after setup gave up root.
    for path in PATHS[5:]:
        assert owners[path][0] == "mailsuite:mailsuite", path
    assert owners["/var/lib/mailsuite/accounts.sqlite"][1] == "600"

    again = in_namespace(tmp_path, SETUP)
    assert again.returncode == 0, again.stderr
    assert "nothing changed: this installation was set up already" in again.stdout
    assert "kept     user mailsuite\n" in again.stdout
