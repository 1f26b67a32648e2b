"""Started as root, `mailsuite serve` binds its listeners (a port below 1024 included), then runs
as `user`; without `user` it refuses root (exit 78) unless `allow_root = true`. Admin commands
run as root become `user` too, so what they create is the server's."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import LISTEN_KINDS, base_config, client_tls_context, toml_dumps

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (started as root)")


def run_cli(conf: Path, *args: str, stdin: bytes = b"", timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
    )


def write_config(root: Path, **overrides) -> Path:
    conf = root / "mailsuite.toml"
    conf.write_text(toml_dumps(base_config(root, **overrides)))
    return conf


def test_serve_refuses_root_without_user_exit_78(tmp_path):
    conf = write_config(tmp_path, allow_root=False)
    result = run_cli(conf, "serve")
    assert result.returncode == 78
    err = result.stderr.decode()
    assert "refusing to run as root" in err and "user" in err and "allow_root" in err
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_serve_with_an_unknown_user_exit_78(tmp_path):
    conf = write_config(tmp_path, allow_root=False, user=f"no-such-{uuid.uuid4().hex[:8]}")
    result = run_cli(conf, "serve")
    assert result.returncode == 78
    assert "no such user" in result.stderr.decode()


@pytest.fixture
def system_user():
    """An unprivileged account made for the test with useradd, removed afterwards."""
    if shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip("useradd/userdel not available")
    name = f"mst{uuid.uuid4().hex[:8]}"
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.decode().strip()}")
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def free_privileged_port() -> int:
    for port in range(700, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def owners_under(root: Path) -> set[tuple[str, int, int]]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            found.add((os.path.relpath(os.path.join(dirpath, name), root), st.st_uid, st.st_gid))
    return found


def process_ids(pid: int) -> tuple[list[int], list[int], list[int]]:
    """Real, effective, saved and filesystem uids and gids, and the supplementary groups."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            fields[key] = [int(v) for v in value.split()]
    return fields["Uid"], fields["Gid"], fields["Groups"]


def test_root_drops_to_user_after_binding_and_admin_commands_create_as_user(system_user):
    uid, gid = system_user.pw_uid, system_user.pw_gid
    # Outside pytest's 0700 temporary folder, which the user could not enter.
    root = Path(tempfile.mkdtemp(prefix="mailsuite-privileges-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        smtp_port = free_privileged_port()
        listen = {k: [] for k in LISTEN_KINDS}
        listen.update(smtp=[f"127.0.0.1:{smtp_port}"], imaps=["127.0.0.1:0"])
        conf = write_config(root, user=system_user.pw_name, allow_root=False, listen=listen)
        # Run as root, the admin command becomes the user: data_dir is made and given to it.
        made = run_cli(
            conf, "user", "add", "alice@example.test", "--password-stdin", stdin=b"secret-pw-1\n"
        )
        assert made.returncode == 0, made.stderr.decode()
        owners = owners_under(root / "data")
        assert {"accounts.sqlite", "mail/example.test/alice/cur"} <= {o[0] for o in owners}
        assert {(u, g) for _, u, g in owners} == {(uid, gid)}
        assert os.stat(root / "data").st_uid == uid

        server = subprocess.Popen(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            seen = []
            ports = {}
            deadline = time.monotonic() + 30
            while len(ports) < 2 and time.monotonic() < deadline:
                line = server.stdout.readline()
                if not line:
                    break
                seen.append(line)
                m = re.search(r"listening for (\w+) on 127\.0\.0\.1:(\d+)", line)
                if m:
                    ports[m.group(1)] = int(m.group(2))
            assert ports.get("smtp") == smtp_port, "".join(seen)
            assert any(f"running as {system_user.pw_name}" in line for line in seen)
            uids, gids, groups = process_ids(server.pid)
            assert uids == [uid] * 4 and gids == [gid] * 4
            assert 0 not in groups
            # The listener bound as root answers the user's process.
            with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
                s.sendmail("ext@remote.test", ["alice@example.test"], b"Subject: x\r\n\r\ny\r\n")
            new = list((root / "data/mail/example.test/alice/new").iterdir())
            assert len(new) == 1 and new[0].stat().st_uid == uid
            # TLS: the self-signed certificate was made by the user, after the drop.
            with socket.create_connection(("127.0.0.1", ports["imaps"]), timeout=10) as raw:
                with client_tls_context().wrap_socket(raw) as tls:
                    assert tls.recv(100).startswith(b"* OK")
            assert (root / "certs" / "mail.key").stat().st_uid == uid
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
        assert {(u, g) for _, u, g in owners_under(root / "data")} == {(uid, gid)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_init_with_user_as_root_makes_data_and_key_the_users(system_user):
    root = Path(tempfile.mkdtemp(prefix="mailsuite-init-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        site = root / "site"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mailsuite.cli",
                "init",
                str(site),
                "--user",
                system_user.pw_name,
            ],
            capture_output=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr.decode()
        assert f'user = "{system_user.pw_name}"' in (site / "mailsuite.toml").read_text()
        owners = owners_under(site / "data") | owners_under(site / "certs")
        assert {"accounts.sqlite", "mail.key"} <= {Path(o[0]).name for o in owners}
        assert {u for _, u, _ in owners} == {system_user.pw_uid}
        assert (site / "data").stat().st_uid == system_user.pw_uid
    finally:
        shutil.rmtree(root, ignore_errors=True)
