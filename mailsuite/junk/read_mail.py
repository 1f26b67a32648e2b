"""Read mail left in INBOX is not junk: a periodic pass teaches the filter so.

A message the user has read (\\Seen) and left in INBOX for `junk.learn_read_after_days` days
was wanted.  Every pass looks at the INBOX of each Maildir this process has open (reading
happens through IMAP, which opens them), picks the old read messages it has not looked at
before, and hands them to the durable-I/O service, which learns those the filter has never
been taught about (an explicit $Junk on a message left in INBOX is not overruled).
"""

from __future__ import annotations

import time

from twisted.application.internet import TimerService
from twisted.logger import Logger

from mailsuite.junk.filter import JunkFilter
from mailsuite.junk.model import HAM, message_identity
from mailsuite.junk.tokens import message_tokens
from mailsuite.store import Mailbox

log = Logger(namespace="mailsuite.junk")

PASS_INTERVAL = 3600.0
# At most this many messages per Maildir and pass: a large INBOX is caught up over passes.
PER_PASS = 500
# Messages looked at, remembered per Maildir (in memory) so a pass reads only new ones.
SEEN_MEMO = 100_000


class ReadMailLearner:
    def __init__(self, junk: JunkFilter, clock=time.time):
        self.junk = junk
        self.clock = clock
        self._examined: dict[str, set[tuple[int, int]]] = {}

    def service(self, interval: float = PASS_INTERVAL) -> TimerService:
        return TimerService(interval, self.run)

    def run(self):
        """One pass (reactor): a Deferred per Maildir with work, or None when idle."""
        days = self.junk.junk_config.learn_read_after_days
        if not days or not self.junk.junk_config.enabled:
            return None
        cutoff = self.clock() - days * 86400
        pending = []
        for mbox in self.junk.store.open_mailboxes():
            msgs = self._candidates(mbox, cutoff)
            if msgs:
                folder = mbox.folder("INBOX")
                pending.append(self.junk.store.io.submit(self._learn, mbox, folder, msgs))
        return pending or None

    def _candidates(self, mbox: Mailbox, cutoff: float) -> list:
        try:
            folder = mbox.folder("INBOX")
        except KeyError:
            return []
        memo = self._examined.setdefault(mbox.address.lower(), set())
        if len(memo) > SEEN_MEMO:
            memo.clear()
        out = []
        for msg in folder.messages:
            key = (folder.uidvalidity, msg.uid)
            if "\\Seen" in msg.flags and msg.internaldate <= cutoff and key not in memo:
                memo.add(key)
                out.append(msg)
                if len(out) >= PER_PASS:
                    break
        return out

    def _learn(self, mbox: Mailbox, folder, msgs) -> int:
        """Blocking: learn the messages never learned before as not junk."""
        model = self.junk.model(mbox)
        n = 0
        for msg in msgs:
            raw = folder.read_present(msg)
            if raw is None:
                continue
            identity = message_identity(raw)
            if model.learned_as(identity) is None:
                model.learn(identity, message_tokens(raw), HAM)
                n += 1
        if n:
            log.info("junk: {user} read mail learned as not junk: {n}", user=mbox.address, n=n)
        return n
