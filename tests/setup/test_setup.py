"""`mailsuite setup --root DIR`: the tree, modes and recorded owners it writes, a second run
that changes nothing, the unit checked by systemd-analyze, the config by `mailsuite check`, and
a server started on what it made, where the printed password logs in."""

from __future__ import annotations

import hashlib
import imaplib
import os
import re
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mailsuite.setup.unit import UnitPaths, unit_text
from tests.conftest import REPO, client_tls_context, run_cli

ARGS = ("--hostname", "mail.example.org", "--domain", "example.org", "--admin", "you@example.org")


def exe() -> str:
    """An executable that exists, for ExecStart (systemd-analyze checks it)."""
    found = Path(sys.executable).with_name("mailsuite")
    return str(found if found.exists() else Path(sys.executable))


def setup(root: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("setup", *ARGS, "--root", str(root), "--exec", exe(), *extra)


def tree(root: Path) -> dict[str, tuple[int, str]]:
    """path -> (mode, sha256 of a file's bytes, "" for a folder)."""
    out = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(top) / name
            st = os.lstat(p)
            digest = "" if stat.S_ISDIR(st.st_mode) else hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), digest)
    return out


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage")
    first = setup(root)
    assert first.returncode == 0, first.stderr.decode()
    return root, first.stdout.decode()


def test_setup_writes_the_tree_with_its_modes_and_records_the_owners(staged):
    root, out = staged
    t = tree(root)
    assert t["etc/mailsuite"][0] == 0o750
    assert t["etc/mailsuite/mailsuite.toml"][0] == 0o640
    assert t["etc/systemd/system/mailsuite.service"][0] == 0o644
    assert t["etc/systemd/system"][0] == 0o755
    assert t["var/lib/mailsuite"][0] == 0o750
    assert t["var/log/mailsuite"][0] == 0o750
    for path in (
        "var/lib/mailsuite/accounts.sqlite",
        "var/lib/mailsuite/dkim/example.org/ed.key",
        "var/lib/mailsuite/dkim/example.org/rsa.key",
        "var/lib/mailsuite/certs/mail.key",
    ):
        assert t[path][0] == 0o600, path
    assert (root / "var/lib/mailsuite/mail/example.org/you/cur").is_dir()
    assert "owner root:mailsuite 0750 /etc/mailsuite\n" in out
    assert "owner root:mailsuite 0640 /etc/mailsuite/mailsuite.toml\n" in out
    assert "owner mailsuite:mailsuite 0750 /var/lib/mailsuite\n" in out
    assert "owner mailsuite:mailsuite 0750 /var/log/mailsuite\n" in out
    assert "owner root:root 0644 /etc/systemd/system/mailsuite.service\n" in out
    # Nothing names the staging tree: every path is the installed system's.
    assert str(root) not in out


def test_setup_config_has_production_ports_public_acme_and_user(staged):
    root, _ = staged
    path = root / "etc/mailsuite/mailsuite.toml"
    data = tomllib.loads(path.read_text())
    assert data["user"] == "mailsuite"
    assert data["data_dir"] == "/var/lib/mailsuite"
    ports = {kind: {a.rsplit(":", 1)[1] for a in addrs} for kind, addrs in data["listen"].items()}
    assert ports == {
        "smtp": {"25"},
        "submission": {"587"},
        "submissions": {"465"},
        "pop3": {"110"},
        "pop3s": {"995"},
        "imap": {"143"},
        "imaps": {"993"},
        "http": {"80"},
        "https": {"443"},
        "metrics": {"9025"},
    }
    assert data["listen"]["metrics"] == ["127.0.0.1:9025"]
    assert data["public"]["host"] == "mail.example.org"
    acme_lines = ("email", "directory", "hosts", "ca_file", "challenge")
    text = path.read_text()
    assert data["acme"]["email"] == "you@example.org"
    assert data["acme"]["challenge"] == "http-01"
    for key in acme_lines:
        assert re.search(rf"^(# )?#? ?{key} = ", text, re.M), key
    # `check` loads the certificate as the configured user, from the installed paths; a
    # staging tree has neither, so the same config is checked as root, pointed into the tree.
    assert 'user = "mailsuite"' in text
    root = path.parents[2]
    staged_text = text.replace('user = "mailsuite"', "allow_root = true")
    for folder in ("/var/lib/mailsuite", "/var/log/mailsuite"):
        staged_text = staged_text.replace(f'"{folder}', f'"{root}{folder}')
    as_root = path.with_name("as-root.toml")
    as_root.write_text(staged_text)
    check = run_cli("--config", str(as_root), "check")
    assert check.returncode == 0, check.stderr.decode()
    assert b"listen metrics      127.0.0.1:9025" in check.stdout


def test_setup_prints_the_password_once_dns_records_and_next_steps(staged):
    _, out = staged
    assert out.count("created  account you@example.org") == 1
    assert re.search(r"shown this once.*\n    \S{20}\n", out)
    assert "ed._domainkey.example.org. 3600 IN TXT" in out
    assert "example.org. 3600 IN MX 10 mail.example.org." in out
    assert "Next steps:" in out and "systemctl daemon-reload" in out


def test_second_run_changes_nothing_and_says_so(tmp_path):
    root = tmp_path / "stage"
    assert setup(root).returncode == 0
    before = tree(root)
    again = setup(root)
    assert again.returncode == 0, again.stderr.decode()
    out = again.stdout.decode()
    assert "nothing changed: this installation was set up already" in out
    assert (
        "\ncreated " not in out and not out.startswith("created") and "shown this once" not in out
    )
    after = tree(root)
    # The accounts database may be touched by SQLite (WAL files); nothing else changes,
    # keys and certificate included.
    assert {k: v for k, v in after.items() if "accounts.sqlite" not in k} == {
        k: v for k, v in before.items() if "accounts.sqlite" not in k
    }


def test_the_password_printed_logs_in_on_a_server_started_on_the_setup(server_factory, tmp_path):
    root = tmp_path / "stage"
    done = setup(root)
    assert done.returncode == 0
    password = re.search(r"shown this once.*\n    (\S+)\n", done.stdout.decode()).group(1)
    data = root / "var/lib/mailsuite"
    srv = server_factory(
        hostname="mail.example.org",
        domains=["example.org"],
        data_dir=str(data),
        tls={"cert": str(data / "certs/mail.pem"), "key": str(data / "certs/mail.key")},
    )
    imap = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context())
    assert imap.login("you@example.org", password)[0] == "OK"
    assert imap.select("INBOX")[0] == "OK"
    imap.logout()
    assert srv.services.accounts.resolve("postmaster@example.org").local == ("you@example.org",)


def test_the_unit_passes_systemd_analyze_verify(staged):
    root, _ = staged
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    unit = root / "etc/systemd/system/mailsuite.service"
    text = unit.read_text()
    for line in (
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ReadWritePaths=/var/lib/mailsuite /var/log/mailsuite",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "User=mailsuite",
        f"ExecStart={exe()} serve",
    ):
        assert f"\n{line}\n" in text, line
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Unknown or misspelt directives are only warnings: there must be none.
    assert str(unit) not in done.stderr, done.stderr


def test_conf_unit_is_setups_unit_with_the_default_paths():
    assert (REPO / "conf/mailsuite.service").read_text() == unit_text(UnitPaths())


def test_admin_outside_the_domain_is_refused(tmp_path):
    done = run_cli(
        "setup",
        "--hostname",
        "mail.example.org",
        "--domain",
        "example.org",
        "--admin",
        "you@elsewhere.test",
        "--root",
        str(tmp_path / "stage"),
    )
    assert done.returncode == 64
    assert b"must be an address at --domain example.org" in done.stderr


def test_setup_without_root_privileges_or_root_dir_is_refused(tmp_path):
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is missing")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        cmd = []
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [*cmd, sys.executable, "-m", "mailsuite.cli", "setup", *ARGS],
        capture_output=True,
        env=env,
        cwd=tmp_path.anchor,
        timeout=60,
    )
    assert done.returncode == 77, done.stderr
    assert b"run it as root, or with --root DIR" in done.stderr


def test_a_name_the_config_refuses_stops_setup_before_anything_is_made(tmp_path):
    done = run_cli(
        "setup",
        "--hostname",
        "mail example org",
        "--domain",
        "example.org",
        "--admin",
        "you@example.org",
        "--root",
        str(tmp_path / "stage"),
    )
    assert done.returncode == 64
    assert b"the config would not load: hostname: must be a host name" in done.stderr
    assert not (tmp_path / "stage").exists()
