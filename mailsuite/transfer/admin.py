"""The `mailsuite import …` and `mailsuite export` subcommands (argparse definitions + runners).

Runners take the CLI's Context (config, store, accounts opened lazily) and return an exit
status (mailsuite.sysexits); the summary line goes to stdout, the bar and skipped-message
notes to stderr. A run that could import nothing at all (every message skipped) fails.
"""

from __future__ import annotations

import getpass
import os
import pwd
import stat
import sys
from pathlib import Path

from mailsuite.accounts.addresses import BadAddress, parse_address
from mailsuite.progress import Progress
from mailsuite.store import BadFolderName, NoSuchMailbox
from mailsuite.store.names import validate as validate_folder
from mailsuite.sysexits import (
    EX_CANTCREAT,
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_NOUSER,
    EX_TEMPFAIL,
    EX_USAGE,
)
from mailsuite.transfer.export import ExportError, export_maildir, export_mbox
from mailsuite.transfer.importimap import ImapImportError, ImapSource, import_imap
from mailsuite.transfer.importmaildir import import_maildir
from mailsuite.transfer.importmbox import count_messages, import_mbox
from mailsuite.transfer.importusers import import_users
from mailsuite.transfer.progress import TransferStats


def add_transfer_commands(subparsers) -> None:
    imp = subparsers.add_parser(
        "import",
        help="bring existing mail into a user's mailbox (a rerun skips what is there already)",
    )
    kinds = imp.add_subparsers(dest="source", metavar="SOURCE", required=True)

    s = kinds.add_parser(
        "mbox", help="import one mbox file into one folder (exit 65: not an mbox, none imported)"
    )
    s.add_argument("file", type=Path, metavar="FILE", help="the mbox file (mboxo or mboxrd)")
    s.add_argument("--user", required=True, metavar="ADDR", help="the local user to import into")
    s.add_argument(
        "--folder",
        default="INBOX",
        metavar="NAME",
        help="destination folder, made if missing (levels separated by /)",
    )
    s.set_defaults(func=run_import_mbox)

    s = kinds.add_parser(
        "maildir", help="import a Dovecot or Courier Maildir++ tree (folders, flags, UIDs)"
    )
    s.add_argument("path", type=Path, metavar="PATH", help="the Maildir's root (it has cur/)")
    s.add_argument("--user", required=True, metavar="ADDR", help="the local user to import into")
    s.set_defaults(func=run_import_maildir)

    s = kinds.add_parser(
        "imap",
        help="copy every folder of a remote IMAP account (rerun copies only what is new; "
        "exit 77: login refused)",
    )
    s.add_argument("--host", required=True, metavar="H", help="the remote IMAP server")
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
    s.add_argument("--user", required=True, metavar="ADDR", help="the local user to export")
    s.add_argument("--to", required=True, type=Path, metavar="DIR", help="a new or empty directory")
    s.add_argument(
        "--format",
        choices=("maildir", "mbox"),
        default="maildir",
        help="a Maildir++ tree, or one mbox file per folder",
    )
    s.set_defaults(func=run_export)


class TransferFailed(Exception):
    """Stops a run before or while it starts: printed as one line, exit status `code`."""

    def __init__(self, message: str, code: int = EX_DATAERR):
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
    try:
        address = parse_address(address)
    except BadAddress as e:
        raise TransferFailed(str(e), EX_DATAERR) from None
    if ctx.accounts.get_user(address) is None:
        raise TransferFailed(f"no such user {address}", EX_NOUSER)
    try:
        return ctx.store.mailbox(address)
    except NoSuchMailbox:
        return ctx.store.create_mailbox(address)


def _finish(progress: Progress, stats: TransferStats, verb: str) -> int:
    """Print the summary; a run where everything was skipped and nothing copied or found
    present fails (EX_TEMPFAIL when the quota was the reason for all of it)."""
    progress.finish(stats.summary(verb))
    if stats.skipped and not stats.copied and not stats.present:
        if all(why == "over quota" for _, why in stats.skipped):
            return EX_TEMPFAIL
        return EX_DATAERR
    return 0


def _check_input(path: Path, want_dir: bool) -> None:
    """Refuse a source that is missing (EX_NOINPUT) or that this process may not read
    (EX_NOPERM: run as root, the command reads as the owner of the data folder)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TransferFailed(f"{path}: no such file or directory", EX_NOINPUT) from None
    except PermissionError:
        raise TransferFailed(f"{path}: {_denied()}", EX_NOPERM) from None
    except OSError as e:
        raise TransferFailed(f"{path}: {e.strerror}", EX_NOINPUT) from None
    kind_ok = stat.S_ISDIR(st.st_mode) if want_dir else stat.S_ISREG(st.st_mode)
    if not kind_ok:
        raise TransferFailed(f"{path}: not a {'directory' if want_dir else 'file'}", EX_NOINPUT)
    if not os.access(path, os.R_OK | (os.X_OK if want_dir else 0)):
        raise TransferFailed(f"{path}: {_denied()}", EX_NOPERM)


def _denied() -> str:
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        name = f"uid {os.geteuid()}"
    return f"permission denied (reading as {name})"


def _folder(name: str) -> str:
    try:
        return validate_folder(name)
    except BadFolderName as e:
        raise TransferFailed(f"--folder {name!r}: {e}", EX_DATAERR) from None


@_reported
def run_import_mbox(ctx) -> int:
    a = ctx.args
    _check_input(a.file, want_dir=False)
    folder = _folder(a.folder)
    try:
        found = count_messages(a.file)
    except OSError as e:
        raise TransferFailed(f"{a.file}: {e.strerror}", EX_NOINPUT) from None
    if not found:
        raise TransferFailed(
            f"{a.file}: not an mbox (no message starts with a 'From ' line); nothing imported",
            EX_DATAERR,
        )
    mailbox = _mailbox(ctx, a.user)
    progress = Progress()
    return _finish(progress, import_mbox(a.file, mailbox, folder, progress), "imported")


@_reported
def run_import_maildir(ctx) -> int:
    a = ctx.args
    _check_input(a.path, want_dir=True)
    if not (a.path / "cur").is_dir():
        raise TransferFailed(f"{a.path}: not a Maildir (no cur/ directory)", EX_NOINPUT)
    mailbox = _mailbox(ctx, a.user)
    progress = Progress()
    return _finish(progress, import_maildir(a.path, mailbox, progress), "imported")


def _imap_password(args) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user} on {args.host}: ")
    else:
        raise TransferFailed("no terminal for the password prompt: use --password-stdin", EX_USAGE)
    if not password:
        raise TransferFailed("empty password", EX_USAGE)
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
        raise TransferFailed(f"import imap: {e}", e.code) from None
    return _finish(progress, stats, "imported")


@_reported
def run_import_users(ctx) -> int:
    a = ctx.args
    _check_input(a.file, want_dir=False)
    progress = Progress()
    stats = import_users(ctx.accounts, ctx.store, a.file, a.replace, progress)
    progress.finish(stats.summary("imported", "user"))
    return EX_DATAERR if stats.skipped and not stats.copied and not stats.present else 0


@_reported
def run_export(ctx) -> int:
    a = ctx.args
    if ctx.accounts.get_user(a.user) is None:
        raise TransferFailed(f"no such user {a.user}", EX_NOUSER)
    mailbox = ctx.store.mailbox(a.user)
    progress = Progress()
    run = export_maildir if a.format == "maildir" else export_mbox
    try:
        stats = run(mailbox, a.to, progress)
    except ExportError as e:
        raise TransferFailed(str(e), EX_CANTCREAT) from None
    return _finish(progress, stats, "exported")


__all__ = ["add_transfer_commands"]
