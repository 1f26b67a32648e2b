"""`mailsuite sieve ...`: an administrator's view of a user's Sieve scripts, on the same store
ManageSieve serves, with or without a server running.

Every change goes through the user's `ScriptStore` (durable, under its lock), so the server sees
it at the next delivery.  Errors are one line in words on stderr with a sysexits code: 65 for a
script that does not compile (with its line), 66 for a script or file that is not there, 67 for
an unknown user, 73 for a quota, 64 for a use the store refuses.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mailsuite.managesieve.store import (
    ActiveScriptError,
    BadNameError,
    QuotaError,
    ScriptExists,
    SieveError,
    check_script,
    open_store,
)

EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_NOUSER = 67
EX_CANTCREAT = 73


class SieveAdminError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def add_sieve_commands(subparsers) -> None:
    """Register `sieve put|get|list|activate|deactivate|delete|rename|check` on the parser."""
    p = subparsers.add_parser("sieve", help="manage a user's Sieve filter scripts")
    sub = p.add_subparsers(dest="sieve_action", required=True, metavar="ACTION")

    s = sub.add_parser("put", help="check and store a script (FILE, or standard input)")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument("name", metavar="NAME", help="the script's name")
    s.add_argument(
        "file", nargs="?", type=Path, metavar="FILE", help="the script (default: standard input)"
    )
    s.add_argument("--activate", action="store_true", help="also make it the active script")
    s.set_defaults(func=cmd_sieve, run=_put)

    s = sub.add_parser("get", help="print a script")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument("name", metavar="NAME", help="the script's name")
    s.set_defaults(func=cmd_sieve, run=_get)

    s = sub.add_parser("list", help="the user's scripts, the active one marked, the last error")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.set_defaults(func=cmd_sieve, run=_list)

    s = sub.add_parser("activate", help="make NAME the script that runs at delivery")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument("name", metavar="NAME", help="the script's name")
    s.set_defaults(func=cmd_sieve, run=_activate)

    s = sub.add_parser("deactivate", help="run no script for the user")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.set_defaults(func=cmd_sieve, run=_deactivate)

    s = sub.add_parser("delete", help="remove a script (not the active one)")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument("name", metavar="NAME", help="the script's name")
    s.set_defaults(func=cmd_sieve, run=_delete)

    s = sub.add_parser("rename", help="give a script another name")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument("name", metavar="NAME", help="the script's name")
    s.add_argument("new_name", metavar="NEW", help="its new name")
    s.set_defaults(func=cmd_sieve, run=_rename)

    s = sub.add_parser("check", help="check a script (FILE, or standard input) without storing")
    s.add_argument("user", metavar="USER", help="the account (user@domain)")
    s.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="the script to check (default: standard input)",
    )
    s.set_defaults(func=cmd_sieve, run=_check)


def cmd_sieve(ctx) -> int:
    """Handler for every `sieve` action; `ctx` is the CLI's Context (accounts, store)."""
    try:
        user = ctx.accounts.get_user(ctx.args.user)
        if user is None:
            raise SieveAdminError(f"no such user {ctx.args.user}", EX_NOUSER)
        return (
            ctx.args.run(
                ctx.args, open_store(ctx.store, user.address, ctx.config.sieve), user.address
            )
            or 0
        )
    except SieveAdminError as e:
        print(f"mailsuite: sieve: {e}", file=sys.stderr)
        return e.code


def _read_script(args) -> str:
    try:
        data = args.file.read_bytes() if args.file else sys.stdin.buffer.read()
    except OSError as e:
        raise SieveAdminError(f"{args.file}: {e.strerror}", EX_NOINPUT) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 5228 §2.1: scripts are UTF-8.
        raise SieveAdminError("the script is not UTF-8", EX_DATAERR) from None


def _put(args, scripts, address: str) -> int:
    text = _read_script(args)
    try:
        scripts.put(args.name, text)
        if args.activate:
            scripts.activate(args.name)
    except SieveError as e:
        raise SieveAdminError(f"{args.name}: {e}", EX_DATAERR) from None
    except QuotaError as e:
        raise SieveAdminError(f"{args.name}: {e}", EX_CANTCREAT) from None
    except BadNameError as e:
        raise SieveAdminError(f"{args.name!r}: {e}", EX_USAGE) from None
    state = " and activated" if args.activate else ""
    print(f"script {args.name} of {address} stored{state}")
    return 0


def _get(args, scripts, address: str) -> int:
    try:
        text = scripts.get(args.name)
    except KeyError:
        raise SieveAdminError(f"{address} has no script {args.name}", EX_NOINPUT) from None
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    return 0


def _list(args, scripts, address: str) -> int:
    active = scripts.active_name()
    for name in scripts.names():
        print(f"{name}\tactive" if name == active else name)
    status = scripts.status()
    if status:
        print(f"last error ({status.get('script')}): {status.get('error')}", file=sys.stderr)
    return 0


def _activate(args, scripts, address: str) -> int:
    try:
        scripts.activate(args.name)
    except KeyError:
        raise SieveAdminError(f"{address} has no script {args.name}", EX_NOINPUT) from None
    print(f"script {args.name} of {address} is active")
    return 0


def _deactivate(args, scripts, address: str) -> int:
    scripts.activate(None)
    print(f"no script of {address} is active")
    return 0


def _delete(args, scripts, address: str) -> int:
    try:
        scripts.delete(args.name)
    except KeyError:
        raise SieveAdminError(f"{address} has no script {args.name}", EX_NOINPUT) from None
    except ActiveScriptError:
        raise SieveAdminError(
            f"{args.name} is the active script of {address}: deactivate it first", EX_USAGE
        ) from None
    print(f"script {args.name} of {address} deleted")
    return 0


def _rename(args, scripts, address: str) -> int:
    try:
        scripts.rename(args.name, args.new_name)
    except KeyError:
        raise SieveAdminError(f"{address} has no script {args.name}", EX_NOINPUT) from None
    except ScriptExists:
        raise SieveAdminError(f"{address} has a script {args.new_name} already", EX_USAGE) from None
    except BadNameError as e:
        raise SieveAdminError(f"{args.new_name!r}: {e}", EX_USAGE) from None
    print(f"script {args.name} of {address} renamed to {args.new_name}")
    return 0


def _check(args, scripts, address: str) -> int:
    text = _read_script(args)
    try:
        check_script(text)
    except SieveError as e:
        where = args.file or "standard input"
        raise SieveAdminError(f"{where}: {e}", EX_DATAERR) from None
    print("script is valid")
    return 0
