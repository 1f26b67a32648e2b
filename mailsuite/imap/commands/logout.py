"""LOGOUT (RFC 3501 §6.1.3)."""

from __future__ import annotations

from mailsuite.imap import response as R
from mailsuite.imap.states import LOGOUT


def logout(session, cmd):
    session.send(R.untagged("BYE mailsuite logging out"))
    session.send(R.tagged(cmd.tag, "OK", "LOGOUT completed"))
    session.flush()
    session.close()
    session.state = LOGOUT
    session.protocol.close()
