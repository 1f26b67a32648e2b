"""`mailsuite setup`: the argparse definition and its runner.

`become` is handed in by the admin command (its switch to the service user,
cli.become_service_user), which setup, below it, cannot import.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mailsuite.accounts.db import AccountError
from mailsuite.setup.steps import SetupError, SetupRequest, run

EX_USAGE = 64
EX_NOPERM = 77


def default_exe() -> str:
    """The mailsuite command the unit runs: the one on PATH (this one, installed), resolved."""
    found = shutil.which("mailsuite")
    return os.path.realpath(found) if found else "/usr/local/bin/mailsuite"


def add_setup_command(subparsers, become=None) -> None:
    s = subparsers.add_parser(
        "setup",
        help="set up a production server in one step: system user, /etc/mailsuite config, "
        "data folder, systemd unit, DKIM keys, first account (run again: changes nothing)",
    )
    s.add_argument("--hostname", required=True, help="this server's name, e.g. mail.example.org")
    s.add_argument("--domain", required=True, help="the mail domain, e.g. example.org")
    s.add_argument(
        "--admin", required=True, metavar="ADDRESS", help="the first account (and ACME contact)"
    )
    s.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="write into this staging tree instead of / (no user created, nothing chowned: "
        "the owners are printed)",
    )
    s.add_argument(
        "--exec",
        dest="exe",
        metavar="PATH",
        help="the mailsuite command the systemd unit runs (default: the one on PATH)",
    )
    s.set_defaults(func=run_setup, become=become)


def run_setup(ctx) -> int:
    args = ctx.args
    if args.root is None and os.geteuid() != 0:
        print(
            "mailsuite: setup creates a system user and writes /etc: run it as root, or with "
            "--root DIR to write a staging tree",
            file=sys.stderr,
        )
        return EX_NOPERM
    request = SetupRequest(
        hostname=args.hostname.lower().rstrip("."),
        domain=args.domain.lower().rstrip("."),
        admin=args.admin.lower(),
        root=args.root.resolve() if args.root is not None else None,
        exe=args.exe or default_exe(),
    )
    try:
        run(request, sys.stdout, args.become)
    except (SetupError, AccountError) as e:
        print(f"mailsuite: setup: {e}", file=sys.stderr)
        return EX_USAGE
    return 0
