"""COMPRESS=DEFLATE (RFC 4978)."""

from __future__ import annotations

from mailsuite.imap import response as R
from mailsuite.imap.parser import Atom, ImapBad, ImapNo


def compress(session, cmd):
    if len(cmd.args) != 1 or not isinstance(cmd.args[0], Atom):
        raise ImapBad("COMPRESS needs a mechanism")
    if cmd.args[0].upper() != "DEFLATE":
        raise ImapBad("Unsupported compression mechanism")
    if session.compressed:
        raise ImapNo("COMPRESSIONACTIVE", "DEFLATE active via COMPRESS")
    session.send(R.tagged(cmd.tag, "OK", "DEFLATE active"))
    session.flush()
    session.compressed = True
    # RFC 4978 §3: DEFLATE both ways from the byte after this tagged OK.
    session.protocol.start_compression()
    return R.ALREADY_ANSWERED
