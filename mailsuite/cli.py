"""The `mailsuite` admin command.

Every subcommand works while the server runs (the account database is shared through SQLite
WAL, the store through Maildir), and every error is one line on stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import sys
from pathlib import Path

from mailsuite import app
from mailsuite.accounts.db import AccountError, Accounts
from mailsuite.config import (
    ConfigError,
    ListenConfig,
    config_path,
    load_config,
    parse_listen_address,
)
from mailsuite.delivery import Envelope, Recipient, TemporaryFailure, UnknownRecipient
from mailsuite.durable.modes import UMASK
from mailsuite.junk import admin as junk_admin
from mailsuite.relay import admin as relay_admin
from mailsuite.services import Services, prepare_data_dir
from mailsuite.store import BadFolderName, NoSuchFolder, NoSuchMailbox, QuotaExceeded, Store
from mailsuite.tls import TlsContexts
from mailsuite.transfer import admin as transfer_admin
from mailsuite.trust import dnsrecords

EX_USAGE = 64
EX_NOUSER = 67
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = app.EX_CONFIG

# Subcommand families that live with the package they manage, each adding its own parsers.
SUBCOMMAND_FAMILIES = (
    relay_admin.add_queue_commands,
    dnsrecords.add_dns_command,
    dnsrecords.add_dkim_command,
    transfer_admin.add_transfer_commands,
    junk_admin.add_junk_commands,
)

DEFAULT_TOML = """\
# mailsuite configuration (written by `mailsuite init`). Paths are relative to this file.
hostname = "{hostname}"
domains = ["{domain}"]
data_dir = "data"
{user_line}
[tls]
cert = "certs/mail.pem"
key = "certs/mail.key"

[listen]
smtp = ["127.0.0.1:2525"]
submission = ["127.0.0.1:2587"]
submissions = ["127.0.0.1:2465"]
pop3 = ["127.0.0.1:2110"]
pop3s = ["127.0.0.1:2995"]
imap = ["127.0.0.1:2143"]
imaps = ["127.0.0.1:2993"]
http = ["127.0.0.1:8080"]

[auth]
plaintext = "never"
"""


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def parse_size(text: str) -> int:
    """'500M', '2G', '1024' -> bytes."""
    text = text.strip().upper()
    mult = 1
    for suffix, m in (("K", 1024), ("M", 1024**2), ("G", 1024**3), ("T", 1024**4)):
        if text.endswith(suffix) or text.endswith(suffix + "B"):
            text = text[: text.index(suffix)]
            mult = m
            break
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(text) * mult


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr too (argparse prints the usage block first);
    subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(2, f"mailsuite: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="mailsuite", description="A self-hosted mail server and its admin command."
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $MAILSUITE_CONFIG or conf/mailsuite.toml)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("init", help="write a config, data folders and a certificate into DIR")
    s.add_argument("dir", type=Path)
    s.add_argument("--hostname", default="mail.example.test")
    s.add_argument("--domain", default="example.test")
    s.add_argument(
        "--user",
        default="",
        metavar="NAME",
        help="the account the server runs as (`user` in the config): run as root, init "
        "creates the data and the certificate as that user",
    )
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("serve", help="run the server in the foreground")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check", help="validate the config and print the listeners it would open")
    s.set_defaults(func=cmd_check)

    dom = sub.add_parser("domain", help="manage local domains").add_subparsers(
        dest="action", required=True
    )
    s = dom.add_parser("add", help="add a local domain")
    s.add_argument("domain")
    s.set_defaults(func=cmd_domain_add)
    s = dom.add_parser("del", help="remove a local domain (it must have no users)")
    s.add_argument("domain")
    s.set_defaults(func=cmd_domain_del)
    s = dom.add_parser("list", help="list local domains")
    s.set_defaults(func=cmd_domain_list)

    usr = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    s = usr.add_parser("add", help="add a user and create its mailbox")
    s.add_argument("address")
    s.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    s.add_argument(
        "--quota", type=parse_size, default=0, metavar="SIZE", help="e.g. 2G (0: unlimited)"
    )
    s.add_argument("--quota-messages", type=int, default=0, metavar="N")
    s.set_defaults(func=cmd_user_add)
    s = usr.add_parser("del", help="remove a user (its mail is kept unless --purge)")
    s.add_argument("address")
    s.add_argument("--purge", action="store_true", help="also delete the user's mail")
    s.set_defaults(func=cmd_user_del)
    s = usr.add_parser("passwd", help="set a user's password")
    s.add_argument("address")
    s.add_argument("--password-stdin", action="store_true")
    s.set_defaults(func=cmd_user_passwd)
    s = usr.add_parser("list", help="list users")
    s.add_argument("domain", nargs="?")
    s.set_defaults(func=cmd_user_list)
    s = usr.add_parser("quota", help="show or set a user's quota")
    s.add_argument("address")
    s.add_argument("--bytes", type=parse_size, metavar="SIZE")
    s.add_argument("--messages", type=int, metavar="N")
    s.set_defaults(func=cmd_user_quota)

    al = sub.add_parser("alias", help="manage aliases").add_subparsers(dest="action", required=True)
    s = al.add_parser("add", help="add an alias (SOURCE may be @domain for a catch-all)")
    s.add_argument("source")
    s.add_argument("targets", nargs="+")
    s.set_defaults(func=cmd_alias_add)
    s = al.add_parser("del", help="remove an alias, or one of its targets")
    s.add_argument("source")
    s.add_argument("target", nargs="?")
    s.set_defaults(func=cmd_alias_del)
    s = al.add_parser("list", help="list aliases")
    s.set_defaults(func=cmd_alias_list)

    s = sub.add_parser(
        "deliver",
        help="deliver one RFC 5322 message from stdin (exit 67: no such user, 75: try later)",
    )
    s.add_argument("--to", required=True, action="append", metavar="ADDRESS")
    s.add_argument("--from", dest="sender", default="", metavar="ADDRESS")
    s.add_argument("--folder", default="INBOX")
    s.set_defaults(func=cmd_deliver)

    for add_commands in SUBCOMMAND_FAMILIES:
        add_commands(sub)
    return p


# -- context ---------------------------------------------------------------------------------


class Context:
    """What a subcommand needs, opened lazily so that `init` and `check` touch nothing."""

    def __init__(self, args):
        self.args = args
        self.config_path = config_path(args.config)
        self._config = None
        self._accounts = None
        self._store = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @property
    def accounts(self) -> Accounts:
        if self._accounts is None:
            prepare_data_dir(self.config)
            self._accounts = Accounts(self.config.accounts_db, self.config.domains)
        return self._accounts

    @property
    def store(self):
        if self._store is None:
            self._store = Store(self.config.mail_dir)
        return self._store

    def services(self) -> Services:
        return Services.create(self.config, with_tls=False)


def read_password(args, confirm: bool = True) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CliError("no terminal for the password prompt: use --password-stdin", EX_USAGE)
        password = getpass.getpass("Password: ")
        if confirm and getpass.getpass("Again: ") != password:
            raise CliError("passwords differ")
    if not password:
        raise CliError("empty password")
    return password


# -- commands --------------------------------------------------------------------------------


def cmd_init(ctx: Context) -> int:
    target: Path = ctx.args.dir
    made = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    conf = target / "mailsuite.toml"
    if conf.exists():
        raise CliError(f"{conf} exists; not overwriting it")
    user_line = f'user = "{ctx.args.user}"\n' if ctx.args.user else ""
    conf.write_text(
        DEFAULT_TOML.format(hostname=ctx.args.hostname, domain=ctx.args.domain, user_line=user_line)
    )
    config = load_config(conf)
    become_service_user(
        config, (config.tls.cert.parent, config.tls.key.parent), (target,) if made else ()
    )
    prepare_data_dir(config)
    Accounts(config.accounts_db, config.domains)
    TlsContexts(config)
    print(f"wrote {conf}, {config.data_dir}/ and {config.tls.cert}")
    print(f"next: mailsuite --config {conf} user add postmaster@{ctx.args.domain}")
    return 0


def cmd_serve(ctx: Context) -> int:
    return app.serve(ctx.config)


def cmd_check(ctx: Context) -> int:
    cfg = ctx.config
    print(f"config {cfg.path}: ok")
    print(f"hostname {cfg.hostname}; domains {', '.join(cfg.domains)}; data in {cfg.data_dir}")
    for f in dataclasses.fields(ListenConfig):
        for addr in getattr(cfg.listen, f.name):
            host, port = parse_listen_address(addr)
            tls = " (implicit TLS)" if f.name in app.IMPLICIT_TLS else ""
            print(f"listen {f.name:<12} {host}:{port}{tls}")
    return 0


def cmd_domain_add(ctx: Context) -> int:
    ctx.accounts.add_domain(ctx.args.domain)
    print(f"domain {ctx.args.domain.lower()} added")
    return 0


def cmd_domain_del(ctx: Context) -> int:
    ctx.accounts.del_domain(ctx.args.domain)
    print(f"domain {ctx.args.domain.lower()} removed")
    return 0


def cmd_domain_list(ctx: Context) -> int:
    for d in ctx.accounts.list_domains():
        print(d)
    return 0


def cmd_user_add(ctx: Context) -> int:
    password = read_password(ctx.args)
    user = ctx.accounts.add_user(
        ctx.args.address, password, ctx.args.quota, ctx.args.quota_messages
    )
    try:
        ctx.store.create_mailbox(user.address, user.quota_bytes, user.quota_messages)
    except OSError as e:
        ctx.accounts.del_user(user.address)
        raise CliError(f"cannot create the mailbox of {user.address}: {e}") from None
    print(f"user {user.address} added")
    return 0


def cmd_user_del(ctx: Context) -> int:
    address = ctx.args.address
    ctx.accounts.del_user(address)
    if ctx.args.purge:
        ctx.store.delete_mailbox(address)
    print(
        f"user {address.lower()} removed" + (" with its mail" if ctx.args.purge else " (mail kept)")
    )
    return 0


def cmd_user_passwd(ctx: Context) -> int:
    if ctx.accounts.get_user(ctx.args.address) is None:
        raise CliError(f"no such user {ctx.args.address}")
    ctx.accounts.set_password(ctx.args.address, read_password(ctx.args))
    print(f"password of {ctx.args.address.lower()} changed")
    return 0


def cmd_user_list(ctx: Context) -> int:
    for u in ctx.accounts.list_users(ctx.args.domain):
        state = "" if u.enabled else " (disabled)"
        quota = (
            f" quota {u.quota_bytes}B/{u.quota_messages}msgs"
            if (u.quota_bytes or u.quota_messages)
            else ""
        )
        print(f"{u.address}{quota}{state}")
    return 0


def cmd_user_quota(ctx: Context) -> int:
    user = ctx.accounts.get_user(ctx.args.address)
    if user is None:
        raise CliError(f"no such user {ctx.args.address}")
    if ctx.args.bytes is not None or ctx.args.messages is not None:
        b = ctx.args.bytes if ctx.args.bytes is not None else user.quota_bytes
        m = ctx.args.messages if ctx.args.messages is not None else user.quota_messages
        ctx.accounts.set_quota(user.address, b, m)
        ctx.store.mailbox(user.address).set_quota(b, m)
    q = ctx.store.mailbox(user.address).quota()
    print(
        f"{user.address}: {q.used_bytes} bytes in {q.used_messages} messages; "
        f"limit {q.limit_bytes or 'none'} bytes, {q.limit_messages or 'none'} messages"
    )
    return 0


def cmd_alias_add(ctx: Context) -> int:
    ctx.accounts.add_alias(ctx.args.source, ctx.args.targets)
    print(f"alias {ctx.args.source.lower()} -> {', '.join(t.lower() for t in ctx.args.targets)}")
    return 0


def cmd_alias_del(ctx: Context) -> int:
    ctx.accounts.del_alias(ctx.args.source, ctx.args.target)
    print(f"alias {ctx.args.source.lower()} removed")
    return 0


def cmd_alias_list(ctx: Context) -> int:
    for source, targets in ctx.accounts.list_aliases().items():
        print(f"{source} -> {', '.join(targets)}")
    return 0


def cmd_deliver(ctx: Context) -> int:
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise CliError("empty message on stdin", EX_USAGE)
    services = ctx.services()
    for rcpt in ctx.args.to:
        if services.delivery.resolve(rcpt).kind == "unknown":
            raise CliError(f"no such user {rcpt}", EX_NOUSER)
    envelope = Envelope(
        ctx.args.sender, [Recipient(a) for a in ctx.args.to], folder=ctx.args.folder
    )
    try:
        services.delivery.deliver_blocking(envelope, data)
    except UnknownRecipient as e:
        raise CliError(f"no such user {e}", EX_NOUSER) from None
    except QuotaExceeded as e:
        raise CliError(f"quota exceeded: {e}", EX_TEMPFAIL if e.temporary else EX_NOPERM) from None
    except TemporaryFailure as e:
        raise CliError(f"temporary failure: {e}", EX_TEMPFAIL) from None
    return 0


def become_service_user(config, folders=(), enterable=()) -> None:
    """Run as root with `user` set, become that user (as `mailsuite serve` does) so that what
    this command creates (accounts DB, Maildirs, spool files, keys) is the server's, and no
    file a user could have planted under data_dir is ever written with root's rights. data_dir
    and `folders`, when missing, are made first and given to the user; `enterable` folders
    (root's, on the way to those) get the user's group and mode 0750 so that it can enter."""
    if os.geteuid() != 0 or not config.user:
        return
    try:
        account = app.run_as(config)
    except app.StartRefused as e:
        raise CliError(str(e), EX_CONFIG) from None
    try:
        for folder in enterable:
            os.chown(folder, -1, account.gid, follow_symlinks=False)
            os.chmod(folder, 0o750, follow_symlinks=False)
        app.make_own_folders(account, (config.data_dir, *folders))
        app.drop_privileges(account)
    except (app.StartRefused, OSError) as e:
        raise CliError(str(e), EX_CONFIG) from None


# Commands that manage their own privileges (serve) or touch no file (check).
KEEP_PRIVILEGES = (cmd_init, cmd_serve, cmd_check)


def main(argv: list[str] | None = None) -> int:
    # Files a library creates with its own default mode are never world-readable; ours name
    # their mode (durable.modes).
    os.umask(UMASK)
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        if args.func not in KEEP_PRIVILEGES:
            become_service_user(ctx.config)
        return args.func(ctx) or 0
    except ConfigError as e:
        print(f"mailsuite: config error: {e}", file=sys.stderr)
        return 2
    except (AccountError, CliError) as e:
        print(f"mailsuite: {e}", file=sys.stderr)
        return getattr(e, "code", 1)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the admin command never shows a traceback
        if isinstance(e, (NoSuchMailbox, NoSuchFolder, BadFolderName)):
            print(f"mailsuite: {e.__class__.__name__}: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError):
            print(
                f"mailsuite: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr
            )
            return 1
        print(f"mailsuite: internal error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
