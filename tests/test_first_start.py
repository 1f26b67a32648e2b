"""A new user's first minutes: `mailsuite --version`, `mailsuite serve` from any folder with no
config (the embedded default, data in the XDG data folder), the start-up summary that says
what listens where and how to add the first user, and config paths taken relative to the
config file's folder, not the current one."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pytest

from mailsuite.config import load_config
from tests import private_network
from tests.conftest import REPO, base_config, run_cli, toml_dumps

PASSWORD = "first-start-Passw0rd"


def mailsuite_on_path(folder: Path) -> Path:
    """A `mailsuite` command (this checkout's) in `folder`, as `pip install` would put one."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "mailsuite"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m mailsuite.cli "$@"\n')
    script.chmod(0o755)
    return folder


def test_version_is_the_package_metadata_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.decode() == f"mailsuite {metadata.version('mailsuite')}\n"


def test_serve_with_no_config_runs_the_embedded_default_in_the_xdg_data_folder(tmp_path):
    netns = private_network.prefix()
    if netns is None:
        pytest.skip("no network namespace for the default ports (unshare)")
    bin_dir = mailsuite_on_path(tmp_path / "bin")
    work = tmp_path / "anywhere"
    work.mkdir()
    xdg = tmp_path / "xdg"
    script = f"""
mailsuite serve > serve.out 2>&1 &
server=$!
for i in $(seq 300); do grep -q "add the first user" serve.out && break; sleep 0.1; done
command=$(sed -n 's/^ *add the first user: //p' serve.out)
printf '%s\\n' {PASSWORD} | $command --password-stdin
printf 'Subject: hi\\r\\n\\r\\nfirst\\r\\n' | {sys.executable} -c '
import smtplib, sys
with smtplib.SMTP("127.0.0.1", 2525, timeout=20) as s:
    s.sendmail("bob@example.org", ["postmaster@example.test"], sys.stdin.buffer.read())
'
kill $server
wait $server
"""
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", XDG_DATA_HOME=str(xdg))
    env.pop("MAILSUITE_CONFIG", None)
    result = subprocess.run(
        [*netns, "bash", "-c", script], cwd=work, env=env, capture_output=True, timeout=120
    )
    out = (work / "serve.out").read_text()
    assert result.returncode == 0, (result.stderr.decode(), out)
    home = xdg / "mailsuite"
    assert "config       embedded default" in out and f"paths in {home}" in out
    assert f"data         {home / 'data'}" in out
    assert f"certificate  {home / 'certs' / 'mail.pem'} (self-signed, made now;" in out
    for kind, port, purpose in [
        ("smtp", 2525, "inbound MX"),
        ("submission", 2587, "STARTTLS then AUTH"),
        ("submissions", 2465, "implicit TLS"),
        ("pop3", 2110, "POP3, STLS"),
        ("pop3s", 2995, "POP3 over implicit TLS"),
        ("imap", 2143, "IMAP, STARTTLS"),
        ("imaps", 2993, "IMAP over implicit TLS"),
        ("http", 8080, "autoconfiguration"),
    ]:
        assert re.search(rf"^  {kind} +127\.0\.0\.1:{port} +.*{purpose}", out, re.M), (kind, out)
    assert "add the first user: mailsuite user add postmaster@example.test" in out
    # The printed command worked as printed, and the message is in the XDG data folder.
    new = list((home / "data" / "mail" / "example.test" / "postmaster" / "new").iterdir())
    assert len(new) == 1 and b"first" in new[0].read_bytes()
    assert not (work / "data").exists() and not (work / "certs").exists()
    # The summary is printed once.
    assert out.count("add the first user") == 1


def test_the_summary_names_the_real_ports_and_the_config_for_the_next_command(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    conf = root / "mailsuite.toml"
    conf.write_text(toml_dumps(base_config(root)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", str(conf), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        while not lines or not lines[-1].startswith("  add the first user"):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line.rstrip("\n"))
        listed = {
            m[1]: int(m[2])
            for m in (re.match(r"^  (\w+) +127\.0\.0\.1:(\d+) ", x) for x in lines)
            if m
        }
        assert set(listed) >= {"smtp", "imap", "imaps", "http"} and 0 not in listed.values()
        command = lines[-1].split(": ", 1)[1]
        assert command == f"mailsuite --config {conf} user add postmaster@example.test"
        argv = command.split()[1:] + ["--password-stdin"]
        added = run_cli(*argv, input=f"{PASSWORD}\n".encode())
        assert added.returncode == 0, added.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_every_path_is_relative_to_the_config_folder_defaults_included(tmp_path):
    site = tmp_path / "etc"
    site.mkdir()
    conf = site / "mailsuite.toml"
    raw = base_config(site, log={"file": "log/mailsuite.log"})
    del raw["tls"], raw["data_dir"]
    conf.write_text(toml_dumps(raw))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:
        config = load_config(Path("../etc/mailsuite.toml"))
    finally:
        os.chdir(cwd)
    assert config.tls.cert == site / "certs" / "mail.pem"
    assert config.tls.key == site / "certs" / "mail.key"
    assert config.data_dir == site / "data"
    assert config.log.file == str(site / "log" / "mailsuite.log")
    # serve, started elsewhere, makes the log folder (0700) beside the config and logs there.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", "../etc/mailsuite.toml", "serve"],
        cwd=elsewhere,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        log_file = site / "log" / "mailsuite.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if log_file.exists() and "listening for imap " in log_file.read_text():
                break
            time.sleep(0.1)
        assert "listening for imap " in log_file.read_text()
        assert stat.S_IMODE((site / "log").stat().st_mode) == 0o700
        assert (site / "certs" / "mail.pem").exists() and not (elsewhere / "certs").exists()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not list(elsewhere.iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to check as another user")
def test_check_refuses_a_log_folder_the_server_cannot_write():
    root = Path(tempfile.mkdtemp(prefix="mailsuite-log-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        (root / "log").mkdir(mode=0o755)  # root's: the server user cannot write in it
        raw = base_config(root, log={"file": "log/mailsuite.log"})
        raw.update(user="nobody", allow_root=False)
        conf = root / "mailsuite.toml"
        conf.write_text(toml_dumps(raw))
        result = run_cli("--config", str(conf), "check")
        assert result.returncode == 78, (result.stdout, result.stderr)
        assert f"the folder {root / 'log'} is not writable" in result.stderr.decode()
        os.chown(root / "log", 65534, 65534)
        result = run_cli("--config", str(conf), "check")
        assert result.returncode == 0, result.stderr
        assert f"log {root / 'log' / 'mailsuite.log'}: ok" in result.stdout.decode()
    finally:
        shutil.rmtree(root, ignore_errors=True)
