"""Sieve at delivery: which script an account runs, running it, and what the run leaves behind
(the user's script status, vacation and duplicate state).  Delivery calls `SieveFilter` for
each local copy and carries out the Outcome itself (stores, queue), since that is its layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path

from twisted.logger import Logger

from mailsuite.config import SieveConfig
from mailsuite.durable import DurableIO
from mailsuite.logtext import visible
from mailsuite.sieve.actions import Outcome, Store, VacationReply
from mailsuite.sieve.dateparts import local_now
from mailsuite.sieve.grammar import SieveError
from mailsuite.sieve.interpreter import Limits, run
from mailsuite.sieve.message_view import MessageInput
from mailsuite.sieve.scripts import ParsedScripts, ScriptStore, account_folder, index_stamp
from mailsuite.sieve.state import RunState

log = Logger(namespace="mailsuite.sieve")

# ScriptStores kept (their compiled scripts with them); beyond this the oldest is dropped.
MAX_CACHED_ACCOUNTS = 4096


@dataclass
class Plan:
    """A run's outcome as delivery carries it out for one recipient."""

    copies: list[tuple[Store, bytes]] = field(default_factory=list)  # what to store, and where
    sends: list[tuple[str, str, str, bytes]] = field(default_factory=list)
    # (kind, envelope sender, recipient, message): redirects and vacation replies
    reject: str | None = None  # the reason, when the message is to be refused
    after: list[Callable[[], None]] = field(default_factory=list)  # once the copies are stored


class SieveFilter:
    """One per Delivery: the accounts' ScriptStores (and so their compiled scripts) shared by
    every delivery of the process."""

    def __init__(self, config: SieveConfig, io: DurableIO | None = None):
        self.config = config
        self.io = io
        self.limits = Limits(
            max_actions=config.max_actions,
            max_redirects=config.max_redirects,
            vacation_days=config.vacation_days,
            vacation_min_days=config.vacation_min_days,
        )
        self._stores: dict[Path, ScriptStore] = {}  # by Maildir
        self._parsed = ParsedScripts()
        self._lock = threading.Lock()

    def scripts(self, maildir: Path) -> ScriptStore:
        """The ScriptStore of the account whose Maildir is `maildir` (Store.path_for)."""
        with self._lock:
            store = self._stores.get(maildir)
            if store is None:
                if len(self._stores) >= MAX_CACHED_ACCOUNTS:
                    self._stores.pop(next(iter(self._stores)))
                store = self._stores[maildir] = ScriptStore(
                    account_folder(maildir),
                    max_scripts=self.config.max_scripts,
                    max_size=self.config.max_script_size,
                    global_folder=self.config.global_dir,
                    io=self.io,
                    parsed=self._parsed,
                )
            return store

    def run(
        self,
        maildir: Path,
        message: MessageInput,
        folders: Callable[[], dict[str, str | None]] | None = None,
        exists: Callable[[str], bool] | None = None,
    ) -> Outcome | None:
        """The outcome of the account's active script; None when it has none (or Sieve is
        off).  `folders` lists the account's folders (name -> special use), called only when
        the script asks; `exists` says whether one folder exists, so that filing into one
        does not list them all.  Blocking (reads the script when it changed): delivery's durable-I/O
        job."""
        if not self.config.enabled:
            return None
        stamp = index_stamp(maildir)
        if stamp is None:
            return None  # the common case: no script ever stored, one stat and nothing more
        store = self.scripts(maildir)
        try:
            script = store.active(stamp)
        except (SieveError, OSError) as e:
            self._failed(store, message, store.active_name() or "", str(e))
            return Outcome(stores=[Store("INBOX")], errors=[str(e)])
        if script is None:
            return None
        if message.now is None:
            # RFC 5260 §4.2: the run's "local" zone is the machine's; taken only now, as
            # most accounts have no script to run.
            message.now = local_now()
        if folders is not None:
            message.folders = folders
        if exists is not None:
            message.exists = exists
        if message.seen is None:
            folder = store.folder
            message.seen = lambda key: RunState(folder).seen(key)
        try:
            outcome = run(script, message, self.limits)
        except Exception as e:
            # A fault of ours must not cost the message either: kept, and logged loudly.
            log.failure("sieve run failed")
            outcome = Outcome(stores=[Store("INBOX")], errors=[f"internal error: {e!r}"])
        if outcome.errors:
            self._failed(store, message, script.name, "; ".join(outcome.errors))
        return outcome

    def note_error(self, maildir: Path, mailbox: str, error: str) -> None:
        """A failure while carrying out a run (a folder that cannot be made, a loop)."""
        store = self.scripts(maildir)
        self._failed(store, MessageInput(b"", "", "", mailbox), store.active_name() or "", error)

    def _failed(self, store: ScriptStore, message: MessageInput, name: str, error: str) -> None:
        # RFC 5228 §2.10.6: the message was kept; the user learns why from the status.
        log.warn(
            "sieve script {name} of {mailbox} failed, message kept in INBOX: {error}",
            name=visible(name),
            mailbox=visible(message.mailbox),
            error=visible(error),
        )
        try:
            store.set_status(name, error)
        except OSError:
            pass

    def vacation_due(self, maildir: Path, reply: VacationReply, now: datetime) -> bool:
        """Whether the reply may go: none went to this sender within its period."""
        state = RunState(account_folder(maildir))
        return not state.vacation_sent_within(
            reply.key, reply.recipient, reply.period, now.timestamp()
        )

    def vacation_sent(self, maildir: Path, reply: VacationReply, now: datetime) -> None:
        """RFC 5230 §4.2: remember the reply, so the sender gets no other in its period."""
        state = RunState(account_folder(maildir))
        state.record_vacation(reply.key, reply.recipient, reply.period, now.timestamp())

    def delivered(self, maildir: Path, outcome: Outcome, now: datetime) -> None:
        """RFC 7352 §3: the duplicate ids are remembered once the message is delivered."""
        if not outcome.duplicates:
            return
        state = RunState(account_folder(maildir))
        for key, period in outcome.duplicates:
            state.record_duplicate(key, period, now.timestamp())

    def plan(self, maildir: Path, message: MessageInput, outcome: Outcome) -> Plan:
        """What delivery does with `outcome` for the account at `maildir`.  RFC 5228 §4.2
        loop control: a message that already carries the account's Delivered-To is not
        redirected again (it is kept)."""
        mailbox, mail_from, data = message.mailbox, message.mail_from, message.raw
        if outcome.reject is not None:
            # RFC 5429 §2.1: never a rejection to the null sender: the message is discarded.
            return Plan(reject=outcome.reject.reason if mail_from else None)
        body = outcome.message if outcome.message is not None else data
        plan = Plan(copies=[(store, body) for store in outcome.stores])
        redirects = outcome.redirects
        if redirects and f"delivered-to: {mailbox}".encode() in _header_of(data).lower():
            self.note_error(maildir, mailbox, "redirect loop: message kept in INBOX")
            plan.copies = plan.copies or [(Store("INBOX"), body)]
            redirects = []
        for redirect in redirects:
            # The account's own address as envelope sender (no SRS; docs/filtering.md):
            # SPF passes for our domain, bounces come back to the user; a bounce stays one.
            sender = mailbox if mail_from else ""
            trace = f"Delivered-To: {mailbox}\r\n".encode("utf-8", "surrogateescape")
            plan.sends.append(("redirect", sender, redirect.address, trace + body))
        reply = outcome.vacation
        now = message.now or local_now()
        if reply is not None and self.vacation_due(maildir, reply, now):
            plan.sends.append(("vacation reply", "", reply.recipient, reply.message))
            plan.after.append(partial(self.vacation_sent, maildir, reply, now))
        plan.after.append(partial(self.delivered, maildir, outcome, now))
        return plan


def _header_of(data: bytes) -> bytes:
    """The header block of raw message bytes (LF or CRLF), at most 64 KiB of it."""
    ends = [e for e in (data.find(b"\n\r\n"), data.find(b"\n\n")) if e >= 0]
    return data[: min(ends) + 1] if ends else data[:65536]
