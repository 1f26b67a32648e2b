"""Sieve at delivery: which script an account runs, running it, and what the run leaves behind
(the user's script status, vacation and duplicate state).  Delivery calls `SieveFilter` for
each local copy and carries out the Outcome itself (stores, queue), since that is its layer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from twisted.logger import Logger

from mailsuite.config import SieveConfig
from mailsuite.durable import DurableIO
from mailsuite.logtext import visible
from mailsuite.sieve.actions import Outcome, Store, VacationReply
from mailsuite.sieve.grammar import SieveError
from mailsuite.sieve.interpreter import Limits, run
from mailsuite.sieve.message_view import MessageInput
from mailsuite.sieve.scripts import ScriptStore, account_folder
from mailsuite.sieve.state import RunState

log = Logger(namespace="mailsuite.sieve")

# ScriptStores kept (their compiled scripts with them); beyond this the oldest is dropped.
MAX_CACHED_ACCOUNTS = 4096


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
        self._stores: dict[Path, ScriptStore] = {}
        self._lock = threading.Lock()

    def scripts(self, maildir: Path) -> ScriptStore:
        """The ScriptStore of the account whose Maildir is `maildir` (Store.path_for)."""
        folder = account_folder(maildir)
        with self._lock:
            store = self._stores.get(folder)
            if store is None:
                if len(self._stores) >= MAX_CACHED_ACCOUNTS:
                    self._stores.pop(next(iter(self._stores)))
                store = self._stores[folder] = ScriptStore(
                    folder,
                    max_scripts=self.config.max_scripts,
                    max_size=self.config.max_script_size,
                    global_folder=self.config.global_dir,
                    io=self.io,
                )
            return store

    def run(
        self,
        maildir: Path,
        message: MessageInput,
        folders: Callable[[], dict[str, str | None]] | None = None,
    ) -> Outcome | None:
        """The outcome of the account's active script; None when it has none (or Sieve is
        off).  `folders` lists the account's folders (name -> special use), called only when
        the script asks.  Blocking (reads the script when it changed): delivery's durable-I/O
        job."""
        if not self.config.enabled:
            return None
        if not (maildir / "sieve").is_dir():
            return None  # the common case: one stat, nothing more
        store = self.scripts(maildir)
        try:
            script = store.active()
        except (SieveError, OSError) as e:
            self._failed(store, message, store.active_name() or "", str(e))
            return Outcome(stores=[Store("INBOX")], errors=[str(e)])
        if script is None:
            return None
        if folders is not None:
            message.folders = folders
        if message.seen is None:
            state = RunState(store.folder)
            message.seen = state.seen
        outcome = run(script, message, self.limits)
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
