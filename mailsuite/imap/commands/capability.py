"""CAPABILITY (RFC 3501 §6.1.1): the list itself comes from the command table."""

from __future__ import annotations

from mailsuite.imap import response as R
from mailsuite.imap.parser import ImapBad


def capability(session, cmd):
    if cmd.args:
        raise ImapBad("CAPABILITY takes no arguments")
    session.send(R.untagged("CAPABILITY " + " ".join(session.capabilities())))
