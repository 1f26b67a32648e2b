"""GENURLAUTH, RESETKEY and URLFETCH (RFC 4467 §7), with ;PARTIAL= in URLs (URL-PARTIAL,
RFC 5550 §5).  URLFETCH's extended form (RFC 5524, URLAUTH=BINARY) is not offered.

The keys and the resolving live in `mailsuite.urlauth` (`services.urlauth`), which the
submission server's BURL uses too; this module is the IMAP wire around them, and
`section_bytes`, IMAP's BODY[section] rules that the resolver is given at wiring."""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.imap.commands.mailbox import mailbox_arg
from mailsuite.imap.fetch_items import parse_section
from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.response import quoted_or_literal
from mailsuite.imap.sections import section_data
from mailsuite.logtext import visible
from mailsuite.message.content import MessageContent
from mailsuite.urlauth import MECHANISMS, BadUrl, NotFound, Requester, UrlRefused, without_token

log = Logger(namespace="mailsuite.imap")

URLMECH = "URLMECH " + " ".join(MECHANISMS)


def section_bytes(raw: bytes, section: str) -> bytes | None:
    """What BODY[<section>] of the stored message `raw` returns (a URL's ;SECTION=, RFC 5092
    §6); None for a section that is malformed or names no part."""
    try:
        sec = parse_section(section.upper())
        return section_data(sec, sec.field_set, MessageContent(raw))
    except (ImapBad, ImapNo):
        return None


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return str(value)
    raise ImapBad("Expected a URL string")


def _mechanism(value) -> str:
    if not isinstance(value, (Atom, bytes)):
        raise ImapBad("Expected a URLAUTH mechanism")
    name = _text(value).upper()
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
        authority.generate(session.user, _text(url), _mechanism(mech))
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


def urlfetch(session, cmd):
    """RFC 4467 §7 URLFETCH url ...: data or NIL for each URL, in one untagged response.

    A URL naming nothing this session may read answers NIL (the command is still OK)."""
    if not cmd.args:
        raise ImapBad("URLFETCH needs a URL")
    urls = [_text(arg) for arg in cmd.args]
    authority = session.services.urlauth
    requester = Requester(session.user)
    pending = [authority.fetch(url, requester) for url in urls]
    d = defer.DeferredList(pending, consumeErrors=True)

    def answered(results):
        parts = []
        for url, (ok, value) in zip(urls, results, strict=True):
            if not ok:
                if not value.check(BadUrl, UrlRefused):
                    log.failure("imap {user}: URLFETCH failed", value, user=session.user)
                    raise ImapNo("SERVERBUG", "URLFETCH failed")
                log.info(
                    "imap {user}: URLFETCH refused {url}: {why}",
                    user=session.user,
                    url=visible(without_token(url)),
                    why=str(value.value),
                )
                value = None
            # RFC 4467 §8: NIL when the URL is invalid for any reason.
            data = b"NIL" if value is None else b"{%d}\r\n" % len(value) + value
            parts.append(quoted_or_literal(url, session.utf8) + b" " + data)
        session.send(b"* URLFETCH " + b" ".join(parts) + b"\r\n")
        return "URLFETCH completed"

    return d.addCallback(answered)
