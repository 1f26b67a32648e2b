"""URLFETCH (RFC 4467 §7), with ;PARTIAL= in URLs (URL-PARTIAL, RFC 5550 §5) and the extended
form of URLAUTH=BINARY (RFC 5524): `(url BINARY BODYPARTSTRUCTURE)` asks for the part with its
Content-Transfer-Encoding undone and for its structure.

    C: t URLFETCH ("imap://alice@host/INBOX/;UID=7/;SECTION=2;URLAUTH=authuser:internal:01…" BINARY)
    S: * URLFETCH "imap://alice@host/…" (BINARY ~{1024}
    S: <1024 octets, NUL among them>)
    S: t OK URLFETCH completed

The URL's authority and the reading are `services.urlauth`'s; what the section is, decoded or
described, `url_parts`' (run in the durable-I/O pool)."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.imap.parser import Atom, ImapBad, ImapNo
from mailsuite.imap.response import quoted_or_literal
from mailsuite.imap.url_parts import NoSuchSection, UrlPart, url_part, url_text
from mailsuite.logtext import visible
from mailsuite.urlauth import BadUrl, NotFound, Requester, UrlRefused, without_token

__all__ = ["PARAMETERS", "UrlRequest", "parse_urlfetch", "urlfetch"]

log = Logger(namespace="mailsuite.imap")

# RFC 5524 §3.1: what an extended URLFETCH may ask for each URL.
BODY, BINARY, BODYPARTSTRUCTURE = "BODY", "BINARY", "BODYPARTSTRUCTURE"
PARAMETERS = (BODY, BINARY, BODYPARTSTRUCTURE)


@dataclass(frozen=True)
class UrlRequest:
    url: str
    params: tuple[str, ...] = ()  # in the client's order; () for RFC 4467's plain form


def _request(arg) -> UrlRequest:
    if not isinstance(arg, list):
        return UrlRequest(url_text(arg))
    # RFC 5524 §5: url-fetch-ext = "(" url-full *(SP url-fetch-param) ")"
    if not arg:
        raise ImapBad("Expected a URL in the parentheses")
    params: list[str] = []
    for value in arg[1:]:
        if not isinstance(value, Atom):
            raise ImapBad("URLFETCH parameters are atoms")
        name = value.upper()
        if name not in PARAMETERS:
            raise ImapBad(f"Unknown URLFETCH parameter {visible(name, 40)}")
        # RFC 5524 §3.1: no item more than once per URL, and never both BINARY and BODY.
        if name in params:
            raise ImapBad(f"URLFETCH parameter {name} given twice")
        params.append(name)
    if BODY in params and BINARY in params:
        raise ImapBad("URLFETCH takes BINARY or BODY, not both")
    # RFC 5524 §3: a URL in parentheses without parameters is the RFC 4467 form.
    return UrlRequest(url_text(arg[0]), tuple(params))


def parse_urlfetch(args: list) -> list[UrlRequest]:
    """URLFETCH's arguments (RFC 4467 §9, RFC 5524 §5); ImapBad for the whole command."""
    if not args:
        raise ImapBad("URLFETCH needs a URL")
    return [_request(arg) for arg in args]


def _extractor(params: tuple[str, ...]):
    """What the resolver runs on the stored message for an extended request."""
    body, binary, structure = (name in params for name in PARAMETERS)

    def extract(raw: bytes, ref) -> UrlPart:
        try:
            return url_part(
                raw, ref.section, ref.partial, body=body, binary=binary, structure=structure
            )
        except NoSuchSection as e:
            raise NotFound(str(e)) from None

    return extract


def urlfetch(session, cmd):
    """RFC 4467 §7 URLFETCH url ...: data or NIL for each URL, in one untagged response.

    A URL naming nothing this session may read answers NIL (the command is still OK). The
    URLs are read one at a time and each part is written as soon as it is read, after the
    client has taken the one before: a command naming one big message many times holds one
    part, not all of them."""
    requests = parse_urlfetch(cmd.args)
    return _answer(session, requests, Requester(session.user))


@defer.inlineCallbacks
def _answer(session, requests: list[UrlRequest], requester: Requester):
    authority = session.services.urlauth
    session.send(b"* URLFETCH")
    for request in requests:
        if session.protocol.closed:
            return None  # the client has gone: the rest is read for nobody
        extract = _extractor(request.params) if request.params else None
        try:
            value = yield authority.fetch(request.url, requester, extract=extract)
        except (BadUrl, UrlRefused) as e:
            log.info(
                "imap {user}: URLFETCH refused {url}: {why}",
                user=session.user,
                url=visible(without_token(request.url)),
                why=str(e),
            )
            value = None
        except Exception:
            log.failure("imap {user}: URLFETCH failed", user=session.user)
            # What is written of the response is ended (this URL NIL) before the NO.
            session.send(b" " + quoted_or_literal(request.url, session.utf8) + b" NIL\r\n")
            raise ImapNo("SERVERBUG", "URLFETCH failed") from None
        url = quoted_or_literal(request.url, session.utf8)
        if value is None:
            # RFC 4467 §8 (and RFC 5524 §5 urldata-error): NIL when the URL is invalid
            # for any reason.
            session.send(b" " + url + b" NIL")
        elif request.params:
            session.send(b" " + url + _metadata(request.params, value))
        else:
            session.send(b" " + url + b" {%d}\r\n" % len(value))
            session.send(value)
        del value
        if not session.protocol.writable():
            session.flush()
            yield session.protocol.wait_writable()
    session.send(b"\r\n")
    return "URLFETCH completed"


def _metadata(params: tuple[str, ...], part: UrlPart) -> bytes:
    """RFC 5524 §3.2, §5: url-metadata = 1*(SP "(" url-metadata-el ")"), in the order asked."""
    out = []
    for name in params:
        if name == BODYPARTSTRUCTURE:
            out.append(b" (BODYPARTSTRUCTURE " + part.structure + b")")
        elif name == BODY:
            out.append(b" (BODY {%d}\r\n" % len(part.body) + part.body + b")")
        elif part.binary is None:
            out.append(b" (BINARY NIL)")  # RFC 5524 §5: NIL on a decoding error
        elif b"\x00" in part.binary:
            # RFC 5524 §5 (RFC 3516 §4.2): content with a NUL octet MUST be a literal8; the
            # client asked for BINARY, so it takes one.
            out.append(b" (BINARY ~{%d}\r\n" % len(part.binary) + part.binary + b")")
        else:
            # Otherwise it SHOULD be an nstring: a client sees at once that there is no NUL.
            out.append(b" (BINARY {%d}\r\n" % len(part.binary) + part.binary + b")")
    return b"".join(out)
