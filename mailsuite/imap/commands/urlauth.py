"""GENURLAUTH and RESETKEY (RFC 4467 §7); URLFETCH is `urlfetch`'s.

The keys and the resolving live in `mailsuite.urlauth` (`services.urlauth`), which the
submission server's BURL uses too; this module is the IMAP wire around them.
`section_bytes` (IMAP's BODY[section] rules for a URL, `url_parts`') is what the resolver is
given at wiring."""

from __future__ import annotations

from twisted.internet import defer

from mailsuite.imap.commands.mailbox import mailbox_arg
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.response import quoted_or_literal
from mailsuite.imap.url_parts import section_bytes, url_text
from mailsuite.logtext import visible
from mailsuite.urlauth import MECHANISMS, BadUrl, NotFound

__all__ = ["URLMECH", "genurlauth", "resetkey", "section_bytes"]

URLMECH = "URLMECH " + " ".join(MECHANISMS)


def _mechanism(value) -> str:
    if not isinstance(value, (Atom, bytes)):
        raise ImapBad("Expected a URLAUTH mechanism")
    name = url_text(value).upper()
    if name not in MECHANISMS:
        raise ImapBad(f"Unknown URLAUTH mechanism {visible(name, 40)}")
    return name


def genurlauth(session, cmd):
    """RFC 4467 §7 GENURLAUTH url mechanism ...: every URL signed, or BAD for the command."""
    args = cmd.args
    if not args or len(args) % 2:
        raise ImapBad("GENURLAUTH takes URL and mechanism pairs")
    authority = session.services.urlauth
    pending = [
        authority.generate(session.user, url_text(url), _mechanism(mech))
        for url, mech in zip(args[0::2], args[1::2], strict=True)
    ]
    d = defer.gatherResults(pending, consumeErrors=True)

    def signed(urls):
        session.send(
            b"* GENURLAUTH " + b" ".join(quoted_or_literal(u, session.utf8) for u in urls) + b"\r\n"
        )
        return "GENURLAUTH completed"

    def refused(failure):
        error = failure.value.subFailure.value
        if isinstance(error, BadUrl):
            raise ImapBad(str(error))
        return failure

    return d.addCallbacks(signed, refused)


def resetkey(session, cmd):
    """RFC 4467 §7 RESETKEY [mailbox [mechanism ...]]: without a mailbox every key goes."""
    authority = session.services.urlauth
    if not cmd.args:
        return authority.reset(session.user).addCallback(lambda _: "All keys removed")
    name = mailbox_arg(session, cmd.args[0])
    for mech in cmd.args[1:]:
        _mechanism(mech)

    def missing(failure):
        failure.trap(NotFound)
        raise ImapNo("NONEXISTENT", "Mailbox does not exist")

    d = authority.reset(session.user, name)
    return d.addCallbacks(lambda _: (URLMECH, "Key reset"), missing)
