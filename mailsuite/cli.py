"""The `mailsuite` admin command.

Every subcommand works while the server runs (the account database is shared through SQLite
WAL, the store through Maildir), and every error is one line on stderr with an exit status
from `mailsuite.sysexits`, the same table for every subcommand.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import errno
import getpass
import json
import os
import pwd
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from mailsuite import app
from mailsuite.accounts.addresses import parse_address, parse_domain
from mailsuite.accounts.db import AccountError, Accounts
from mailsuite.accounts.passwordpolicy import check_password
from mailsuite.acme import admin as acme_admin
from mailsuite.backup import admin as backup_admin
from mailsuite.config import (
    EMBEDDED_CONFIG,
    ConfigError,
    ListenConfig,
    config_path,
    embedded_base,
    is_embedded,
    load_config,
    parse_listen_address,
)
from mailsuite.delivery import (
    Envelope,
    MessageRejected,
    Recipient,
    TemporaryFailure,
    UnknownRecipient,
)
from mailsuite.durable.modes import UMASK
from mailsuite.junk import admin as junk_admin
from mailsuite.managesieve import admin as sieve_admin
from mailsuite.relay import admin as relay_admin
from mailsuite.services import Services, prepare_data_dir
from mailsuite.setup import admin as setup_admin
from mailsuite.store import BadFolderName, NoSuchFolder, NoSuchMailbox, QuotaExceeded, Store
from mailsuite.store.names import validate as validate_folder
from mailsuite.sysexits import (
    EX_CANTCREAT,
    EX_CONFIG,
    EX_DATAERR,
    EX_IOERR,
    EX_NOINPUT,
    EX_NOPERM,
    EX_NOUSER,
    EX_SOFTWARE,
    EX_TEMPFAIL,
    EX_USAGE,
)
from mailsuite.tls import TlsContexts, TlsError, certificate_status
from mailsuite.transfer import admin as transfer_admin
from mailsuite.trust import dnsrecords

# What a process that found its standard output closed (`mailsuite ... | head`) exits with:
# 128 + SIGPIPE, as a program the signal ended.
EX_CLOSED_OUTPUT = 141

# Subcommand families that live with the package they manage, each adding its own parsers.
SUBCOMMAND_FAMILIES = (
    relay_admin.add_queue_commands,
    dnsrecords.add_dns_command,
    dnsrecords.add_dkim_command,
    transfer_admin.add_transfer_commands,
    acme_admin.add_cert_commands,
    backup_admin.add_backup_commands,
    lambda sub: setup_admin.add_setup_command(sub, become=become_service_user),
    sieve_admin.add_sieve_commands,
    junk_admin.add_junk_commands,
)


class CliError(Exception):
    """A refusal of the admin command: one line on stderr, exit status `code` (sysexits)."""

    def __init__(self, message: str, code: int = EX_SOFTWARE):
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
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (a number, or e.g. 500M, 2G)")
    return int(text) * mult


def count(text: str) -> int:
    """A number of messages: 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (unlimited) or more, not {value}")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """Usage errors are one line on stderr too (argparse prints the usage block first), with
    EX_USAGE like every other usage error; subcommand parsers inherit the class."""

    def error(self, message: str):
        self.exit(EX_USAGE, f"mailsuite: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineErrorParser(
        prog="mailsuite", description="A self-hosted mail server and its admin command."
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"mailsuite {app.version_text()}",
        help="print the installed version (from the package metadata) and exit",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $MAILSUITE_CONFIG, else conf/mailsuite.toml if it exists, "
        "else the embedded default with its data in ~/.local/share/mailsuite)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("init", help="write a config, data folders and a certificate into DIR")
    s.add_argument("dir", type=Path, help="the folder to set up (made if missing)")
    s.add_argument(
        "--hostname", default="mail.example.test", help="this server's name (`hostname`)"
    )
    s.add_argument("--domain", default="example.test", help="the first local domain")
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
        dest="action", metavar="ACTION", required=True
    )
    s = dom.add_parser("add", help="add a local domain (stored in its ASCII form, xn--...)")
    s.add_argument("domain", help="the domain name, e.g. example.org or bücher.example")
    s.set_defaults(func=cmd_domain_add)
    s = dom.add_parser("del", help="remove a local domain (it must have no users)")
    s.add_argument("domain", help="the local domain to remove")
    s.set_defaults(func=cmd_domain_del)
    s = dom.add_parser("list", help="list local domains")
    s.set_defaults(func=cmd_domain_list)

    usr = sub.add_parser("user", help="manage users").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = usr.add_parser("add", help="add a user and create its mailbox")
    s.add_argument("address", help="the new user's address, in a local domain")
    s.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )
    s.add_argument(
        "--quota",
        type=parse_size,
        default=0,
        metavar="SIZE",
        help="the mailbox's size limit, e.g. 2G (0: unlimited)",
    )
    s.add_argument(
        "--quota-messages",
        type=count,
        default=0,
        metavar="N",
        help="the most messages the mailbox holds (0: unlimited)",
    )
    s.set_defaults(func=cmd_user_add)
    s = usr.add_parser("del", help="remove a user (its mail is kept unless --purge)")
    s.add_argument("address", help="the user to remove")
    s.add_argument("--purge", action="store_true", help="also delete the user's mail")
    s.set_defaults(func=cmd_user_del)
    s = usr.add_parser("passwd", help="set a user's password")
    s.add_argument("address", help="the user whose password changes")
    s.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of prompting",
    )
    s.set_defaults(func=cmd_user_passwd)
    s = usr.add_parser("list", help="list users")
    s.add_argument("domain", nargs="?", help="only the users of this local domain")
    s.set_defaults(func=cmd_user_list)
    s = usr.add_parser("quota", help="show or set a user's quota")
    s.add_argument("address", help="the user")
    s.add_argument(
        "--bytes", type=parse_size, metavar="SIZE", help="set the size limit, e.g. 2G (0: none)"
    )
    s.add_argument(
        "--messages", type=count, metavar="N", help="set the message count limit (0: none)"
    )
    s.set_defaults(func=cmd_user_quota)

    al = sub.add_parser("alias", help="manage aliases").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = al.add_parser("add", help="add an alias (SOURCE may be @domain for a catch-all)")
    s.add_argument("source", help="the alias address, or @domain for every unknown address")
    s.add_argument("targets", nargs="+", help="where its mail goes: local or remote addresses")
    s.set_defaults(func=cmd_alias_add)
    s = al.add_parser("del", help="remove an alias, or one of its targets")
    s.add_argument("source", help="the alias address or @domain")
    s.add_argument("target", nargs="?", help="remove only this target (default: the whole alias)")
    s.set_defaults(func=cmd_alias_del)
    s = al.add_parser("list", help="list aliases")
    s.set_defaults(func=cmd_alias_list)

    s = sub.add_parser(
        "deliver",
        help="deliver one RFC 5322 message from stdin (exit 67: no such user, 73: no such "
        "folder, 75: try later)",
    )
    s.add_argument(
        "--to",
        required=True,
        action="append",
        metavar="ADDRESS",
        help="a recipient (repeat for several)",
    )
    s.add_argument(
        "--from",
        dest="sender",
        default="",
        metavar="ADDRESS",
        help="the envelope sender (Return-Path; default: empty, as for a bounce)",
    )
    s.add_argument(
        "--folder",
        default="INBOX",
        metavar="NAME",
        help="deliver into this existing folder of every local recipient",
    )
    s.set_defaults(func=cmd_deliver)

    for add_commands in SUBCOMMAND_FAMILIES:
        add_commands(sub)
    _describe(p)
    return p


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand's own --help the one line its parent lists it with."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                if not sub.description and helps.get(name):
                    sub.description = helps[name][:1].upper() + helps[name][1:] + "."
                _describe(sub)


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


def read_password(args, address: str, min_length: int, confirm: bool = True) -> str:
    """The new password of `address`, from stdin or the prompt; either way the same policy
    (accounts.passwordpolicy) refuses a weak one with the same words, before anything is
    written."""
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CliError("no terminal for the password prompt: use --password-stdin", EX_USAGE)
        password = getpass.getpass("Password: ")
        check_password(password, address, min_length)
        if confirm and getpass.getpass("Again: ") != password:
            raise CliError("passwords differ", EX_DATAERR)
    check_password(password, address, min_length)
    return password


# -- commands --------------------------------------------------------------------------------


def init_config_text(hostname: str, domain: str, user: str) -> str:
    """The embedded default (the one source of the defaults) with this site's names: a `user`
    replaces `allow_root = true`, which only the loopback default wants."""
    text = EMBEDDED_CONFIG.read_text(encoding="utf-8")
    header = (
        "# mailsuite configuration, written by `mailsuite init` from the embedded default.\n"
        "# Paths are relative to this file's folder; every key: docs/configuration.md.\n"
    )
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("#")]
    body = "".join(lines)
    body = re.sub(r'(?m)^hostname = "[^"]*"', lambda _: f"hostname = {json.dumps(hostname)}", body)
    body = re.sub(r"(?m)^domains = \[[^\]]*\]", lambda _: f"domains = [{json.dumps(domain)}]", body)
    if user:
        body = re.sub(
            r"(?m)^allow_root = true.*\n(?:^ {20,}#.*\n)*",
            lambda _: f"user = {json.dumps(user)}\n",
            body,
        )
    return header + body


def cmd_init(ctx: Context) -> int:
    target: Path = ctx.args.dir
    made = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    conf = target / "mailsuite.toml"
    if conf.exists():
        raise CliError(f"{conf} exists; not overwriting it", EX_CANTCREAT)
    conf.write_text(init_config_text(ctx.args.hostname, ctx.args.domain, ctx.args.user))
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
    """Validate the config, then load the certificate and key exactly as `serve` does (as the
    account `serve` runs as), and check that the log can be written."""
    cfg = ctx.config
    try:
        app.drop_privileges(app.run_as(cfg))
    except app.StartRefused as e:
        raise CliError(str(e), EX_CONFIG) from None
    if is_embedded(cfg):
        print(f"config {cfg.path} (embedded default, paths in {embedded_base()}): ok")
    else:
        print(f"config {cfg.path}: ok")
    print(f"hostname {cfg.hostname}; domains {', '.join(cfg.domains)}; data in {cfg.data_dir}")
    for f in dataclasses.fields(ListenConfig):
        for addr in getattr(cfg.listen, f.name):
            host, port = parse_listen_address(addr)
            tls = " (implicit TLS)" if f.name in app.IMPLICIT_TLS else ""
            print(f"listen {f.name:<12} {host}:{port}{tls}")
    try:
        status = certificate_status(cfg)
    except TlsError as e:
        raise CliError(f"tls: {e}", EX_CONFIG) from None
    if status.state == "to be made":
        print(f"certificate {status.cert_path}: missing, made self-signed at start")
    else:
        kind = "self-signed" if status.self_signed else "issued"
        until = status.not_after.date().isoformat() if status.not_after else "?"
        print(
            f"certificate {status.cert_path}: ok ({kind}, valid until {until}, "
            f"SHA-256 {status.fingerprint})"
        )
    problem = app.log_folder_problem(cfg)
    if problem:
        raise CliError(problem, EX_CONFIG)
    print(f"log {'standard output' if cfg.log.file == '-' else cfg.log.file}: ok")
    return 0


def cmd_domain_add(ctx: Context) -> int:
    domain = parse_domain(ctx.args.domain)
    ctx.accounts.add_domain(domain)
    print(f"domain {domain} added")
    return 0


def cmd_domain_del(ctx: Context) -> int:
    domain = ctx.accounts.del_domain(ctx.args.domain)
    print(f"domain {domain} removed")
    return 0


def cmd_domain_list(ctx: Context) -> int:
    for d in ctx.accounts.list_domains():
        print(d)
    return 0


def cmd_user_add(ctx: Context) -> int:
    # The address first: a typo is refused before the password is asked for.
    address = parse_address(ctx.args.address)
    password = read_password(ctx.args, address, ctx.config.accounts.min_password_length)
    store = ctx.store
    quota_bytes, quota_messages = ctx.args.quota, ctx.args.quota_messages
    path = store.path_for(address)
    existed, domain_existed = path.exists(), path.parent.exists()

    def make_mailbox(stored: str) -> None:
        store.create_mailbox(stored, quota_bytes, quota_messages)

    try:
        # The Maildir is made inside the account's transaction: no row without its Maildir.
        user = ctx.accounts.add_user(
            address, password, quota_bytes, quota_messages, before_commit=make_mailbox
        )
    except BaseException as e:
        if not existed:
            store.delete_mailbox(address)  # what this attempt made, and only that
        if not domain_existed and path.parent.is_dir() and not any(path.parent.iterdir()):
            path.parent.rmdir()
        if isinstance(e, OSError):
            raise CliError(
                f"cannot create the mailbox of {address}: {e.strerror or e}", EX_CANTCREAT
            ) from None
        raise
    print(f"user {user.address} added")
    return 0


def cmd_user_del(ctx: Context) -> int:
    purge = ctx.args.purge
    store = ctx.store
    set_aside: list[tuple[Path, Path]] = []

    def set_mail_aside(address: str) -> None:
        # Renamed inside the transaction (one atomic step that can be undone), removed only
        # once the row is gone for good.
        path = store.path_for(address)
        if purge and path.exists():
            aside = path.with_name(f".deleting-{path.name}-{os.getpid()}")
            os.rename(path, aside)
            set_aside.append((path, aside))

    try:
        address = ctx.accounts.del_user(ctx.args.address, before_commit=set_mail_aside)
    except BaseException:
        for path, aside in set_aside:
            if aside.exists() and not path.exists():
                os.rename(aside, path)
        raise
    for _path, aside in set_aside:
        store.delete_mailbox(address)  # forget the open Mailbox (nothing is left at `path`)
        shutil.rmtree(aside)
    print(f"user {address} removed" + (" with its mail" if purge else " (mail kept)"))
    return 0


def cmd_user_passwd(ctx: Context) -> int:
    user = ctx.accounts.get_user(ctx.args.address)
    if user is None:
        raise CliError(f"no such user {ctx.args.address}", EX_NOUSER)
    password = read_password(ctx.args, user.address, ctx.config.accounts.min_password_length)
    ctx.accounts.set_password(user.address, password)
    print(f"password of {user.address} changed")
    return 0


def cmd_user_list(ctx: Context) -> int:
    domain = ctx.args.domain
    if domain:
        domain = parse_domain(domain)
        if not ctx.accounts.is_local_domain(domain):
            raise CliError(f"{domain} is not a local domain", EX_NOUSER)
    for u in ctx.accounts.list_users(domain):
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
        raise CliError(f"no such user {ctx.args.address}", EX_NOUSER)
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
    source, targets = ctx.accounts.add_alias(ctx.args.source, ctx.args.targets)
    print(f"alias {source} -> {', '.join(targets)}")
    return 0


def cmd_alias_del(ctx: Context) -> int:
    source = ctx.accounts.del_alias(ctx.args.source, ctx.args.target)
    if ctx.args.target:
        print(f"alias {source}: target {ctx.args.target.strip().lower()} removed")
    else:
        print(f"alias {source} removed")
    return 0


def cmd_alias_list(ctx: Context) -> int:
    for source, targets in ctx.accounts.list_aliases().items():
        print(f"{source} -> {', '.join(targets)}")
    return 0


def cmd_deliver(ctx: Context) -> int:
    data = sys.stdin.buffer.read()
    if not data.strip():
        raise CliError("empty message on stdin", EX_DATAERR)
    try:
        folder = validate_folder(ctx.args.folder)
    except BadFolderName as e:
        raise CliError(f"--folder {ctx.args.folder!r}: {e}", EX_DATAERR) from None
    services = ctx.services()
    for rcpt in ctx.args.to:
        res = services.delivery.resolve(rcpt)
        if res.kind == "unknown":
            raise CliError(f"no such user {rcpt}", EX_NOUSER)
        # The server files mail for a folder that is not there into INBOX (a Sieve script
        # may name one); asked for here by name, a missing folder is a mistake to report.
        for mailbox in res.local if folder != "INBOX" else ():
            try:
                found = services.store.mailbox(mailbox).exists(folder)
            except NoSuchMailbox:
                found = False
            if not found:
                raise CliError(
                    f"{mailbox} has no folder {folder!r}: nothing delivered", EX_CANTCREAT
                )
    envelope = Envelope(ctx.args.sender, [Recipient(a) for a in ctx.args.to], folder=folder)
    try:
        services.delivery.deliver_blocking(envelope, data)
    except UnknownRecipient as e:
        raise CliError(f"no such user {e}", EX_NOUSER) from None
    except QuotaExceeded as e:
        raise CliError(f"quota exceeded: {e}", EX_TEMPFAIL if e.temporary else EX_NOPERM) from None
    except TemporaryFailure as e:
        raise CliError(f"temporary failure: {e}", EX_TEMPFAIL) from None
    except MessageRejected as e:
        raise CliError(f"rejected by the recipient's Sieve script: {e}", EX_NOPERM) from None
    return 0


def become_service_user(config, folders=(), enterable=()) -> None:
    """Run as root, become the account that owns the data (as `mailsuite serve` does) so that
    what this command creates (accounts DB, Maildirs, spool files, keys) is the server's, and
    no file a user could have planted under data_dir is ever written with root's rights.

    That account is `user` of the config; without one, the owner of an existing data_dir when
    that is not root (a server run by its own account, `user` unset): a root-owned file there
    would make that server answer 451 later. With `user`, data_dir and `folders`, when
    missing, are made first and given to the user; `enterable` folders (root's, on the way to
    those) get the user's group and mode 0750 so that it can enter."""
    if os.geteuid() != 0:
        return
    _load_lazy_modules()
    if not config.user:
        _become_data_owner(config.data_dir)
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


def _load_lazy_modules() -> None:
    """Load what the standard library imports at first use (codecs, the strptime parser)
    while root can still read it: after the switch to another account, a Python that only
    root can read (pyenv under /root) would fail at that first use."""
    for name in ("ascii", "latin-1", "utf-8", "idna", "utf-16", "cp1252"):
        codecs.lookup(name)
    time.strptime("2000", "%Y")


def _become_data_owner(data_dir: Path) -> None:
    """Root with no `user` configured: become the owner (user and group) of data_dir if that
    is not root. Nothing to do for a data_dir root owns or that is not there."""
    try:
        st = os.stat(data_dir)
    except OSError:
        return  # missing, or in the way: said in words where the data folder is opened
    if st.st_uid == 0:
        return
    try:
        name = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        name = ""  # an owner with no account entry: no supplementary groups then
    try:
        if name:
            app.drop_privileges(app.RunAs(name, st.st_uid, st.st_gid))
        else:
            os.setgroups([st.st_gid])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
    except (app.StartRefused, OSError) as e:
        raise CliError(
            f"cannot become the owner of {data_dir} (uid {st.st_uid}): {e}", EX_CONFIG
        ) from None


# Commands that manage their own privileges (serve) or touch no file (check).
KEEP_PRIVILEGES = (cmd_init, cmd_serve, cmd_check, setup_admin.run_setup)


def _os_error_status(e: OSError) -> int:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EX_NOPERM
    if e.errno == errno.ENOENT:
        return EX_NOINPUT
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return EX_TEMPFAIL
    return EX_IOERR


def _output_closed() -> int:
    """The reader of our output went away (`mailsuite check | head -1`): say nothing more.
    Standard output is pointed at /dev/null so that the interpreter's last flush at exit does
    not fail again with a message."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return EX_CLOSED_OUTPUT
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return EX_CLOSED_OUTPUT


def main(argv: list[str] | None = None) -> int:
    # Files a library creates with its own default mode are never world-readable; ours name
    # their mode (durable.modes).
    os.umask(UMASK)
    try:
        return _run(argv)
    except BrokenPipeError:
        return _output_closed()


def _run(argv: list[str] | None) -> int:
    """Parse, run the subcommand, and turn every refusal into one line on stderr and its
    exit status (mailsuite.sysexits)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        if args.func not in KEEP_PRIVILEGES:
            become_service_user(ctx.config)
        status = args.func(ctx) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except BrokenPipeError:
        raise
    except ConfigError as e:
        print(f"mailsuite: config error: {e}", file=sys.stderr)
        return EX_CONFIG
    except (AccountError, CliError) as e:
        print(f"mailsuite: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130
    except (NoSuchMailbox, NoSuchFolder) as e:
        print(f"mailsuite: {e.__class__.__name__}: {e}", file=sys.stderr)
        return EX_NOUSER
    except BadFolderName as e:
        print(f"mailsuite: bad folder name: {e}", file=sys.stderr)
        return EX_DATAERR
    except OSError as e:
        print(f"mailsuite: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr)
        return _os_error_status(e)
    except sqlite3.OperationalError as e:
        # The server holds the account database's write lock longer than the busy timeout:
        # nothing was changed (the transaction rolled back), the same command can be rerun.
        if "locked" in str(e) or "busy" in str(e):
            print(f"mailsuite: the account database is busy ({e}): try again", file=sys.stderr)
            return EX_TEMPFAIL
        print(f"mailsuite: the account database: {e}", file=sys.stderr)
        return EX_IOERR
    except Exception as e:  # the admin command never shows a traceback
        print(f"mailsuite: internal error: {e.__class__.__name__}: {e}", file=sys.stderr)
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
