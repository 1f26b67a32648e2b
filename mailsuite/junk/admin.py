"""`mailsuite junk ...`: allow and block lists, a user's filter statistics, and retraining a
user's filter from what their Junk folder and INBOX hold now.

The commands work on the files directly (SQLite in WAL mode), with or without a running
server: the server sees a list change at its next delivery.
"""

from __future__ import annotations

import sys
from typing import TextIO

from mailsuite.junk.filter import GLOBAL_LISTS_FILE, junk_folder_of
from mailsuite.junk.model import ALLOW, BLOCK, HAM, JUNK, MODEL_FILE, FilterData, message_identity
from mailsuite.junk.tokens import message_tokens
from mailsuite.progress import Progress
from mailsuite.store import Mailbox, Store


def add_junk_commands(subparsers) -> None:
    """Register `junk allow|block|unlist|lists|stats|retrain` on the main parser."""
    p = subparsers.add_parser("junk", help="the junk filter: allow/block lists, stats, retrain")
    sub = p.add_subparsers(dest="junk_action", required=True, metavar="ACTION")
    for name, text in (
        ("allow", "never file mail from ADDR (address or domain) as junk"),
        ("block", "always file mail from ADDR (address or domain) as junk"),
        ("unlist", "take ADDR off the allow and block lists"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("entry", metavar="ADDR", help="user@domain, domain or @domain")
        s.add_argument("--user", metavar="U", help="this user's list (default: the server's)")
        s.set_defaults(func=cmd_junk, junk_action=name)
    s = sub.add_parser("lists", help="show the allow and block lists")
    s.add_argument("--user", metavar="U", help="this user's lists (default: the server's)")
    s.set_defaults(func=cmd_junk, junk_action="lists")
    s = sub.add_parser("stats", help="what a user's filter has learned")
    s.add_argument("--user", metavar="U", required=True, help="the account (user@domain)")
    s.set_defaults(func=cmd_junk, junk_action="stats")
    s = sub.add_parser("retrain", help="rebuild a user's filter from Junk (junk) and INBOX")
    s.add_argument("--user", metavar="U", required=True, help="the account (user@domain)")
    s.set_defaults(func=cmd_junk, junk_action="retrain")


class CommandFailed(Exception):
    pass


def cmd_junk(ctx) -> int:
    """Handler for every `junk` action; ``ctx.config`` is the loaded Config."""
    args = ctx.args
    action = args.junk_action
    try:
        if action in ("allow", "block", "unlist", "lists"):
            data = _lists_data(ctx, args.user)
            if action == "lists":
                for value, kind in data.listed():
                    print(f"{kind}\t{value}")
                return 0
            kind = {"allow": ALLOW, "block": BLOCK}.get(action)
            if "@" in args.entry.strip("@") or "." in args.entry:
                data.set_listed(args.entry, kind)
            else:
                raise CommandFailed(f"{args.entry!r} is neither an address nor a domain")
            whose = args.user or "server"
            print(f"{args.entry}: {action if kind else 'off the lists'} ({whose})")
            return 0
        mbox = _mailbox(ctx, args.user)
        data = FilterData(mbox.path / MODEL_FILE)
        if action == "stats":
            print_stats(data, mbox, sys.stdout)
            return 0
        junk, ham = retrain(mbox, data, Progress())
        print(f"{args.user}: learned {junk} junk and {ham} legitimate message(s)")
        return 0
    except CommandFailed as e:
        print(f"mailsuite: junk: {e}", file=sys.stderr)
        return 1


def _lists_data(ctx, user: str | None) -> FilterData:
    if user is None:
        return FilterData(ctx.config.data_dir / GLOBAL_LISTS_FILE)
    return FilterData(_mailbox(ctx, user).path / MODEL_FILE)


def _mailbox(ctx, user: str) -> Mailbox:
    found = ctx.accounts.get_user(user)
    if found is None:
        raise CommandFailed(f"no such user {user}")
    store: Store = ctx.store
    return store.mailbox(found.address)


def print_stats(data: FilterData, mbox: Mailbox, out: TextIO) -> None:
    junk, ham = data.totals()
    print(f"user: {mbox.address}", file=out)
    print(f"learned: {junk} junk, {ham} not junk", file=out)
    print(f"words: {data.word_count()}", file=out)
    print(f"correspondents: {data.correspondent_count()}", file=out)
    for value, kind in data.listed():
        print(f"{kind}: {value}", file=out)
    for kind, label in ((JUNK, "junk words"), (HAM, "legitimate words")):
        top = data.strongest(kind, 10)
        words = ", ".join(t for t, j, h in top if (j if kind == JUNK else h))
        print(f"{label}: {words or '-'}", file=out)


def retrain(mbox: Mailbox, data: FilterData, progress: Progress) -> tuple[int, int]:
    """Forget every lesson, then learn the Junk folder as junk and INBOX as not junk."""
    data.reset()
    learned = {JUNK: 0, HAM: 0}
    for name, kind in ((junk_folder_of(mbox), JUNK), ("INBOX", HAM)):
        if not mbox.exists(name):
            continue
        folder = mbox.folder(name)
        folder.refresh()
        msgs = list(folder.messages)
        progress.start(f"{name} ({kind})", len(msgs))
        for msg in msgs:
            raw = folder.read_present(msg)
            if raw is not None and data.learn(message_identity(raw), message_tokens(raw), kind):
                learned[kind] += 1
            progress.advance()
    progress.finish()
    return learned[JUNK], learned[HAM]
