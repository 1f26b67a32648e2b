"""The `mailsuite import …` and `mailsuite export` subcommands (argparse definitions + runners).

Runners take the CLI's Context (config, store, accounts opened lazily) and return an exit
status; the summary line goes to stdout, the bar and skipped-message notes to stderr.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from mailsuite.store import NoSuchMailbox
from mailsuite.transfer.export import ExportError, export_maildir, export_mbox
from mailsuite.transfer.importimap import ImapImportError, ImapSource, import_imap
from mailsuite.transfer.importmaildir import import_maildir
from mailsuite.transfer.importmbox import import_mbox
from mailsuite.transfer.importusers import import_users
from mailsuite.transfer.progress import Progress, TransferStats


def add_transfer_commands(subparsers) -> None:
    imp = subparsers.add_parser("import", help="bring existing mail into a user's mailbox")
    kinds = imp.add_subparsers(dest="source", metavar="SOURCE", required=True)

    s = kinds.add_parser("mbox", help="import one mbox file into one folder")
    s.add_argument("file", type=Path, metavar="FILE")
    s.add_argument("--user", required=True, metavar="ADDR", help="the local user to import into")
    s.add_argument("--folder", default="INBOX", metavar="NAME", help="destination (default INBOX)")
    s.set_defaults(func=run_import_mbox)

    s = kinds.add_parser(
        "maildir", help="import a Dovecot or Courier Maildir++ tree (folders, flags, UIDs)"
    )
    s.add_argument("path", type=Path, metavar="PATH")
    s.add_argument("--user", required=True, metavar="ADDR")
    s.set_defaults(func=run_import_maildir)

    s = kinds.add_parser(
        "imap", help="copy every folder of a remote IMAP account (rerun copies only what is new)"
    )
    s.add_argument("--host", required=True, metavar="H")
    s.add_argument(
        "--port", type=int, metavar="P", help="default 993 (143 with --tls starttls/none)"
    )
    s.add_argument("--user", required=True, metavar="U", help="login name on the remote server")
    s.add_argument("--user-to", required=True, metavar="ADDR", help="the local user to import into")
    s.add_argument(
        "--tls",
        choices=("implicit", "starttls", "none"),
        default="implicit",
        help="implicit TLS (default), STARTTLS, or none (only on a trusted network)",
    )
    s.add_argument("--cafile", metavar="PEM", help="trust this CA (e.g. a self-signed server)")
    s.add_argument("--insecure", action="store_true", help="do not verify the server certificate")
    s.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    s.add_argument(
        "--keep-names",
        action="store_true",
        help="keep remote folder names; by default the remote Sent/Drafts/Trash/Junk/Archive "
        "(by SPECIAL-USE, whatever their names) go into ours",
    )
    s.set_defaults(func=run_import_imap)

    s = kinds.add_parser(
        "users", help="create users with their password hashes from a Dovecot passwd-file"
    )
    s.add_argument("file", type=Path, metavar="PASSWD-FILE", help="user@domain:{SCHEME}hash:...")
    s.add_argument(
        "--replace", action="store_true", help="also set the hash of users that already exist"
    )
    s.set_defaults(func=run_import_users)

    s = subparsers.add_parser("export", help="write a user's mail to a Maildir tree or mbox files")
    s.add_argument("--user", required=True, metavar="ADDR")
    s.add_argument("--to", required=True, type=Path, metavar="DIR", help="a new or empty directory")
    s.add_argument("--format", choices=("maildir", "mbox"), default="maildir")
    s.set_defaults(func=run_export)


class TransferFailed(Exception):
    """Stops a run before or while it starts: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _reported(run):
    """Print TransferFailed as `mailsuite: message` and return its code (no traceback)."""

    def wrapper(ctx) -> int:
        try:
            return run(ctx)
        except TransferFailed as e:
            print(f"mailsuite: {e}", file=sys.stderr)
            return e.code

    wrapper.__name__ = run.__name__
    wrapper.__doc__ = run.__doc__
    return wrapper


def _mailbox(ctx, address: str):
    if ctx.accounts.get_user(address) is None:
        raise TransferFailed(f"no such user {address}", 67)  # EX_NOUSER
    try:
        return ctx.store.mailbox(address)
    except NoSuchMailbox:
        return ctx.store.create_mailbox(address)


def _finish(progress: Progress, stats: TransferStats, verb: str) -> int:
    progress.finish(stats.summary(verb))
    return 0


@_reported
def run_import_mbox(ctx) -> int:
    a = ctx.args
    if not a.file.is_file():
        raise TransferFailed(f"{a.file}: not a file")
    mailbox = _mailbox(ctx, a.user)
    progress = Progress()
    return _finish(progress, import_mbox(a.file, mailbox, a.folder, progress), "imported")


@_reported
def run_import_maildir(ctx) -> int:
    a = ctx.args
    if not (a.path / "cur").is_dir():
        raise TransferFailed(f"{a.path}: not a Maildir (no cur/ directory)")
    mailbox = _mailbox(ctx, a.user)
    progress = Progress()
    return _finish(progress, import_maildir(a.path, mailbox, progress), "imported")


def _imap_password(args) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user} on {args.host}: ")
    else:
        raise TransferFailed("no terminal for the password prompt: use --password-stdin", 64)
    if not password:
        raise TransferFailed("empty password")
    return password


@_reported
def run_import_imap(ctx) -> int:
    a = ctx.args
    mailbox = _mailbox(ctx, a.user_to)
    port = a.port or (993 if a.tls == "implicit" else 143)
    src = ImapSource(
        a.host,
        port,
        a.user,
        _imap_password(a),
        a.tls,
        a.cafile,
        a.insecure,
        keep_names=a.keep_names,
    )
    progress = Progress()
    try:
        stats = import_imap(src, mailbox, progress)
    except ImapImportError as e:
        raise TransferFailed(f"import imap: {e}", 75) from None
    return _finish(progress, stats, "imported")


@_reported
def run_import_users(ctx) -> int:
    a = ctx.args
    if not a.file.is_file():
        raise TransferFailed(f"{a.file}: not a file")
    progress = Progress()
    stats = import_users(ctx.accounts, ctx.store, a.file, a.replace, progress)
    progress.finish(stats.summary("imported", "user"))
    return 0


@_reported
def run_export(ctx) -> int:
    a = ctx.args
    if ctx.accounts.get_user(a.user) is None:
        raise TransferFailed(f"no such user {a.user}", 67)
    mailbox = ctx.store.mailbox(a.user)
    progress = Progress()
    run = export_maildir if a.format == "maildir" else export_mbox
    try:
        stats = run(mailbox, a.to, progress)
    except ExportError as e:
        raise TransferFailed(str(e)) from None
    return _finish(progress, stats, "exported")


__all__ = ["add_transfer_commands"]
