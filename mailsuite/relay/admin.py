"""`mailsuite queue ...`: look at and act on the outbound spool, with or without a server running.

Every change is made on disk under the queue lock (queue.Queue.modify/remove), then the
command touches the flush trigger: a running server re-reads the spool within
``relay.scan_interval`` (SIGUSR1 to the server does the same).  Without a running server the
changes wait for the next start; bounces asked for with `queue bounce` are sent by the runner.
`queue flush` waits for a running server to take the trigger, and says so when none does.
"""

from __future__ import annotations

import json
import sys
import time

from mailsuite.spool.queue import FAILED, PENDING, NoSuchEntry, Queue, QueueEntry
from mailsuite.sysexits import EX_NOUSER, EX_UNAVAILABLE

# How long `queue flush` waits for a running server to take the trigger: its next scans
# (relay.scan_interval apart), with room for a busy reactor.
FLUSH_WAIT_SCANS = 3
FLUSH_WAIT_EXTRA = 1.0

ADMIN_BOUNCE_STATUS = "5.0.0"
ADMIN_BOUNCE_TEXT = "delivery cancelled by the mail administrator"


def add_queue_commands(subparsers) -> None:
    """Register `queue list|show|flush|retry|delete|bounce` on the main parser."""
    q = subparsers.add_parser("queue", help="inspect and manage the outbound mail queue")
    sub = q.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("list", help="list queued messages (id, age, sender, recipients, ...)")
    s.add_argument("--json", action="store_true", help="one JSON object per entry")
    s.set_defaults(func=cmd_queue, queue_action="list")
    s = sub.add_parser("show", help="show one entry: envelope, recipient states, header")
    s.add_argument("id", help="the entry's id, as `queue list` shows it")
    s.add_argument("--body", action="store_true", help="print the whole message")
    s.set_defaults(func=cmd_queue, queue_action="show")
    s = sub.add_parser(
        "flush",
        help="make every queued message due now and wake the running server "
        "(exit 69 when no server takes it)",
    )
    s.set_defaults(func=cmd_queue, queue_action="flush")
    for name, text in (
        ("retry", "retry these entries now"),
        ("delete", "remove these entries without telling anyone"),
        ("bounce", "give up on these entries and send the senders a bounce"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("ids", nargs="+", metavar="ID", help="entry ids, as `queue list` shows them")
        s.set_defaults(func=cmd_queue, queue_action=name)


def cmd_queue(ctx) -> int:
    """Handler for every `queue` action; ``ctx.config`` is the loaded Config."""
    queue = Queue(ctx.config.queue_dir)
    action = ctx.args.queue_action
    out = sys.stdout
    if action == "list":
        return queue_list(queue, out, as_json=ctx.args.json)
    if action == "show":
        return queue_show(queue, ctx.args.id, out, body=ctx.args.body)
    if action == "flush":
        return queue_flush(queue, ctx.config.relay.scan_interval, out)
    change = {"retry": _due_now, "bounce": _bounce}.get(action)
    status = 0
    for qid in ctx.args.ids:
        if action == "delete":
            ok = queue.remove(qid) if _exists(queue, qid) else False
        else:
            ok = _try(queue, qid, change)
        if not ok:
            print(f"mailsuite: queue: no such entry: {qid}", file=sys.stderr)
            status = EX_NOUSER
        else:
            print(f"{qid}: {action}", file=out)
    queue.trigger()
    return status


def queue_flush(queue: Queue, scan_interval: float, out) -> int:
    """Mark every entry due now and touch the trigger; then wait for a running server to take
    it (its runner removes the file at its next scan). Only then is delivery under way; with
    no server the entries wait, marked due, for the next start (EX_UNAVAILABLE)."""
    n = sum(1 for qid in queue.ids() if _try(queue, qid, _due_now))
    queue.trigger()
    deadline = time.monotonic() + FLUSH_WAIT_SCANS * scan_interval + FLUSH_WAIT_EXTRA
    while queue.trigger_path.exists() and time.monotonic() < deadline:
        time.sleep(min(0.05, scan_interval))
    if queue.trigger_path.exists():
        print(
            f"mailsuite: queue: the server is not running: {n} queued message(s) marked due "
            "now; they are sent when it starts",
            file=sys.stderr,
        )
        return EX_UNAVAILABLE
    print(f"{n} queued message(s) marked due now; the server is delivering them", file=out)
    return 0


def _exists(queue: Queue, qid: str) -> bool:
    try:
        queue.load(qid)
        return True
    except NoSuchEntry:
        return False


def _try(queue: Queue, qid: str, change) -> bool:
    try:
        queue.modify(qid, change)
        return True
    except NoSuchEntry:
        return False


def _due_now(entry: QueueEntry) -> None:
    entry.next_attempt = 0.0


def _bounce(entry: QueueEntry) -> None:
    now = time.time()
    for r in entry.recipients:
        if r.state == PENDING:
            r.state = FAILED
            r.status = ADMIN_BOUNCE_STATUS
            r.diagnostic = ADMIN_BOUNCE_TEXT
            r.remote_mta = ""
            r.dsn_sent = False
            r.updated = now
    entry.next_attempt = 0.0


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _when(ts: float, now: float) -> str:
    if ts <= now:
        return "now"
    return "in " + _age(ts - now)


def queue_list(queue: Queue, out, as_json: bool = False) -> int:
    now = time.time()
    entries = list(queue.entries())
    if as_json:
        for e in entries:
            print(json.dumps(e.to_json()), file=out)
        return 0
    if not entries:
        print("queue is empty", file=out)
        return 0
    print(f"{'ID':<20} {'AGE':>5} {'SIZE':>8}  {'NEXT':<8} SENDER -> RECIPIENTS", file=out)
    for e in entries:
        pending = [r.address for r in e.recipients if r.state == PENDING]
        waiting = pending or [f"({r.address}: notice owed)" for r in e.recipients]
        sender = e.mail_from or "<>"
        print(
            f"{e.id:<20} {_age(now - e.created):>5} {e.size:>8}  "
            f"{_when(e.next_attempt, now):<8} {sender} -> {', '.join(waiting)}",
            file=out,
        )
        if e.last_error:
            print(f"{'':<20} last error: {e.last_error}", file=out)
    print(f"-- {len(entries)} message(s)", file=out)
    return 0


def queue_show(queue: Queue, qid: str, out, body: bool = False) -> int:
    try:
        e = queue.load(qid)
        data = queue.read_message(qid)
    except NoSuchEntry:
        print(f"mailsuite: queue: no such entry: {qid}", file=sys.stderr)
        return EX_NOUSER
    now = time.time()
    print(f"id: {e.id}", file=out)
    print(f"sender: <{e.mail_from}>", file=out)
    print(
        f"queued: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.created))} "
        f"({_age(now - e.created)} ago)",
        file=out,
    )
    print(f"size: {e.size}", file=out)
    print(f"attempts: {e.attempts}, next attempt: {_when(e.next_attempt, now)}", file=out)
    if e.dsn_ret or e.dsn_envid:
        print(f"dsn: ret={e.dsn_ret or '-'} envid={e.dsn_envid or '-'}", file=out)
    if e.last_error:
        print(f"last error: {e.last_error}", file=out)
    for r in e.recipients:
        extra = f" {r.status} {r.diagnostic}".rstrip() if r.status else ""
        via = f" via {r.remote_mta}" if r.remote_mta else ""
        print(f"  <{r.address}> {r.state}{extra}{via}", file=out)
    print("", file=out)
    if body:
        text = data
    else:
        end = min(
            (i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=len(data)
        )
        text = data[:end] + b"\n"
    out.write(text.decode("utf-8", "replace"))
    return 0
