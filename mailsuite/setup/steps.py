"""The steps of `mailsuite setup`, each idempotent: it makes what is missing, keeps what exists
(never a key or a password made again), and says which it did.

Run as root the steps that need root come first (the system user, /etc/mailsuite, the unit, the
data and log folders given to the user), then the process becomes the service user (`become`,
the admin command's own switch) and makes what the server will own (accounts database, DKIM
keys, the self-signed certificate, the first mailbox) as that user. With `root` (a staging tree
for tests and packagers) nothing is chowned and no user is created: the owners each path should
have are printed instead, for the package's post-install script to apply.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import secrets
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mailsuite.accounts.db import Accounts
from mailsuite.config import Config, ConfigError, config_from_dict, load_config
from mailsuite.durable.modes import make_private_dirs
from mailsuite.setup.config_text import config_text
from mailsuite.setup.unit import UnitPaths, unit_text
from mailsuite.store import Store
from mailsuite.tls import make_self_signed
from mailsuite.trust import dkim, dnsrecords


class SetupError(Exception):
    """Setup cannot go on; the text says why (one line)."""


@dataclass(frozen=True)
class SetupRequest:
    hostname: str
    domain: str
    admin: str
    root: Path | None = None  # a staging tree: nothing chowned, no user created
    exe: str = "/usr/local/bin/mailsuite"
    user: str = "mailsuite"
    etc_dir: str = "/etc/mailsuite"
    data_dir: str = "/var/lib/mailsuite"
    log_dir: str = "/var/log/mailsuite"
    unit_path: str = "/etc/systemd/system/mailsuite.service"

    @property
    def config_path(self) -> str:
        return self.etc_dir + "/mailsuite.toml"

    def staged(self, path: str | Path) -> Path:
        """Where a path of the installed system is written: under `root` when staging."""
        path = Path(path)
        return self.root / path.relative_to("/") if self.root is not None else path

    def installed(self, path: str | Path) -> str:
        """The reverse of `staged`: the path as the installed system will know it."""
        path = Path(path)
        if self.root is not None and path.is_relative_to(self.root):
            return "/" + str(path.relative_to(self.root))
        return str(path)


@dataclass
class SetupReport:
    """What each step did, printed as it happens."""

    out: TextIO
    changes: int = 0
    owners: list[tuple[str, str, int]] = field(default_factory=list)  # (path, owner, mode)

    def made(self, what: str) -> None:
        self.changes += 1
        self.out.write(f"created  {what}\n")

    def kept(self, what: str) -> None:
        self.out.write(f"kept     {what}\n")


class Owners:
    """Owner names and, on a real system, their ids (None when staging: recorded only)."""

    def __init__(self, request: SetupRequest, report: SetupReport):
        self.request = request
        self.report = report

    def apply(self, installed: str, owner: str, group: str, mode: int) -> None:
        self.report.owners.append((installed, f"{owner}:{group}", mode))
        if self.request.root is not None:
            return
        os.chown(
            self.request.staged(installed),
            pwd.getpwnam(owner).pw_uid,
            grp.getgrnam(group).gr_gid,
            follow_symlinks=False,
        )


def make_system_dirs(path: Path) -> None:
    """mkdir -p for system folders on the way (/etc/systemd/system in a staging tree): 0755,
    as a system has them, whatever the umask."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        folder.mkdir()
        os.chmod(folder, 0o755)


def ensure_user(request: SetupRequest, report: SetupReport) -> None:
    """The system user and its group (useradd --system), unless staging."""
    if request.root is not None:
        report.kept(f"user {request.user}: not created under --root (the package makes it)")
        return
    try:
        pwd.getpwnam(request.user)
    except KeyError:
        pass
    else:
        report.kept(f"user {request.user}")
        return
    done = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            request.data_dir,
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "mailsuite mail server",
            request.user,
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SetupError(f"useradd {request.user} failed: {done.stderr.strip()}")
    report.made(f"user {request.user} (system account, no login)")


def ensure_dir(
    request: SetupRequest, owners: Owners, installed: str, owner: str, group: str, mode: int
) -> None:
    path = request.staged(installed)
    if path.is_dir():
        owners.report.owners.append((installed, f"{owner}:{group}", mode))
        owners.report.kept(f"{installed}/")
        return
    make_system_dirs(path.parent)
    path.mkdir(mode=mode)
    os.chmod(path, mode)  # mkdir's mode passes through the umask
    owners.apply(installed, owner, group, mode)
    owners.report.made(f"{installed}/ ({mode:04o} {owner}:{group})")


def ensure_file(
    request: SetupRequest,
    owners: Owners,
    installed: str,
    text: str,
    owner: str,
    group: str,
    mode: int,
) -> None:
    """Write the file if it is missing; an existing one is kept as it is (the admin may have
    edited it), with a word when it differs from what setup would write."""
    path = request.staged(installed)
    if path.exists():
        owners.report.owners.append((installed, f"{owner}:{group}", mode))
        same = path.read_text(errors="replace") == text
        owners.report.kept(installed + ("" if same else " (differs from setup's; left as it is)"))
        return
    make_system_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.setup")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    owners.apply(installed, owner, group, mode)
    owners.report.made(f"{installed} ({mode:04o} {owner}:{group})")


def staged_config(request: SetupRequest) -> Config:
    """The written config as the server will read it, its paths moved under `root` when
    staging (so that what follows writes into the staging tree)."""
    config = load_config(request.staged(request.config_path))
    if request.root is None:
        return config
    tls = dataclasses.replace(
        config.tls, cert=request.staged(config.tls.cert), key=request.staged(config.tls.key)
    )
    return dataclasses.replace(config, data_dir=request.staged(config.data_dir), tls=tls)


def system_steps(request: SetupRequest, report: SetupReport) -> None:
    """What root does: the user, /etc/mailsuite and the config, the folders, the unit."""
    user = request.user
    text = config_text(
        request.hostname, request.domain, request.admin, request.data_dir, request.log_dir, user
    )
    try:  # before anything is made: a name the config refuses stops setup here
        config_from_dict(tomllib.loads(text), base=Path("/"))
    except ConfigError as e:
        raise SetupError(f"the config would not load: {e}") from None
    owners = Owners(request, report)
    ensure_user(request, report)
    ensure_dir(request, owners, request.etc_dir, "root", user, 0o750)
    ensure_file(request, owners, request.config_path, text, "root", user, 0o640)
    ensure_dir(request, owners, request.data_dir, user, user, 0o750)
    ensure_dir(request, owners, request.log_dir, user, user, 0o750)
    unit = unit_text(
        UnitPaths(
            exe=request.exe,
            config=request.config_path,
            data_dir=request.data_dir,
            log_dir=request.log_dir,
            user=user,
        )
    )
    ensure_file(request, owners, request.unit_path, unit, "root", "root", 0o644)


def data_steps(request: SetupRequest, config: Config, report: SetupReport) -> str | None:
    """What the service user owns: accounts, DKIM keys, certificate, the first account.
    Returns the first account's password when it was made now (None: it existed)."""
    for folder in (config.mail_dir, config.queue_dir):
        if not folder.is_dir():
            make_private_dirs(folder)
            report.made(f"{request.installed(folder)}/")
    existed = config.accounts_db.exists()
    accounts = Accounts(config.accounts_db, [request.domain])
    (report.kept if existed else report.made)(
        f"accounts database {request.installed(config.accounts_db)}"
    )

    if dkim.load_keys(config, request.domain):
        report.kept(f"DKIM keys of {request.domain}")
    else:
        for key_type in dkim.KEY_TYPES:
            key = dkim.generate_key(
                config, request.domain, dkim.DEFAULT_SELECTORS[key_type], key_type
            )
            report.made(f"DKIM key {key.dns_name} ({key_type})")

    cert, key = config.tls.cert, config.tls.key
    if cert.exists() or key.exists():
        report.kept(f"certificate {request.installed(cert)}")
    else:
        make_self_signed(cert, key, config.hostname)
        report.made(f"self-signed certificate {request.installed(cert)} (until ACME's is in)")

    password = None
    if accounts.get_user(request.admin) is not None:
        report.kept(f"account {request.admin} (password unchanged)")
    else:
        password = secrets.token_urlsafe(15)
        user = accounts.add_user(request.admin, password)
        Store(config.mail_dir).create_mailbox(user.address)
        report.made(f"account {user.address}")
    postmaster = f"postmaster@{request.domain}"
    if accounts.resolve(postmaster) is None:
        accounts.add_alias(postmaster, [request.admin])
        report.made(f"alias {postmaster} -> {request.admin}")
    else:
        report.kept(f"address {postmaster}")
    return password


def run(
    request: SetupRequest,
    out: TextIO,
    become: Callable[[Config], None] | None = None,
) -> SetupReport:
    """Every step, in order; `become(config)` switches to the service user (run as root)."""
    if "@" not in request.admin or request.admin.rpartition("@")[2].lower() != request.domain:
        raise SetupError(f"--admin {request.admin} must be an address at --domain {request.domain}")
    report = SetupReport(out)
    system_steps(request, report)
    config = staged_config(request)
    if request.root is None and become is not None:
        become(config)
    password = data_steps(request, config, report)
    if request.root is not None:
        out.write("\nowners to apply (not applied under --root):\n")
        for path, owner, mode in report.owners:
            out.write(f"owner {owner} {mode:04o} {path}\n")
    if report.changes == 0:
        out.write("\nnothing changed: this installation was set up already\n")
    else:
        out.write(f"\n{report.changes} things created\n")
    if password is not None:
        out.write(
            f"\nThe password of {request.admin} (shown this once; change it with "
            f"`mailsuite user passwd {request.admin}`):\n    {password}\n"
        )
    out.write("\n" + dnsrecords.zone_text(config, request.domain))
    out.write(next_steps(request))
    return report


def next_steps(request: SetupRequest) -> str:
    return f"""
Next steps:
  1. Publish the DNS records above (and A/AAAA for {request.hostname}, a PTR for each
     address); `mailsuite dns {request.domain} --check` says when they are right.
  2. Open ports 25, 465, 587, 993 (and 143, 995, 110 if used), 80 and 443.
  3. systemctl daemon-reload && systemctl enable --now mailsuite
     (the first start gets the certificate over ACME; `mailsuite cert status` shows it).
  4. Set up backups: mailsuite backup /var/backups/mailsuite (docs/backup.md).
"""
