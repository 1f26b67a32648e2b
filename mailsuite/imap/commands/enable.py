"""ENABLE (RFC 5161): CONDSTORE, QRESYNC (RFC 7162), UTF8=ACCEPT (RFC 6855) and IMAP4rev2
(RFC 9051 §6.3.1)."""

from __future__ import annotations

from mailsuite.imap import response as R
from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.states import AUTHENTICATED

ENABLEABLE = frozenset({"CONDSTORE", "QRESYNC", "UTF8=ACCEPT", "IMAP4REV2"})
# How ENABLED spells each (the capability's own spelling).
_SPELLING = {"IMAP4REV2": "IMAP4rev2"}


def enable(session, cmd):
    if not cmd.args or not all(isinstance(a, Atom) for a in cmd.args):
        raise ImapBad("ENABLE needs capability names")
    newly = []
    for arg in cmd.args:
        name = arg.upper()
        if name not in ENABLEABLE or name in session.enabled:
            continue
        if name == "UTF8=ACCEPT" and session.state != AUTHENTICATED:
            # RFC 6855 §3: UTF8=ACCEPT only before a mailbox is selected.
            raise ImapBad("ENABLE UTF8=ACCEPT must come before SELECT")
        session.enabled.add(name)
        newly.append(name)
        if name == "QRESYNC" and "CONDSTORE" not in session.enabled:
            # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
            session.enabled.add("CONDSTORE")
            newly.append("CONDSTORE")
    session.send(R.untagged("ENABLED" + "".join(" " + _SPELLING.get(n, n) for n in newly)))
    if "CONDSTORE" in newly and session.view is not None:
        # RFC 7162 §3.1: enabling CONDSTORE while selected reports the HIGHESTMODSEQ.
        hms = session.view.folder.highestmodseq
        session.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % hms)
