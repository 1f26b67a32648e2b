"""IMAP URLs (RFC 5092) naming one message or a part of it: what CATENATE (RFC 4469),
URLFETCH and GENURLAUTH (RFC 4467) and the submission server's BURL (RFC 4468) read.

Syntax only; opening the message is the resolver's job (`resolver.py`).  CATENATE takes only
URLs of the session's own mailboxes (RFC 4469 §3 leaves URLAUTH out of its scope); the URLAUTH
commands ask for the authorized forms with `urlauth=True` or `parse_url_rump`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_to_bytes

__all__ = [
    "ACCESS_KINDS",
    "Authorization",
    "BadUrl",
    "ImapUrl",
    "parse_message_url",
    "parse_url_rump",
    "without_token",
]

ACCESS_KINDS = ("submit", "user", "authuser", "anonymous")


class BadUrl(ValueError):
    """A URL this server cannot or will not resolve (IMAP response code BADURL)."""


@dataclass(frozen=True)
class Authorization:
    """The URLAUTH part of a URL (RFC 4467 §3): who may use it, until when, and its token."""

    rump: str  # the URL up to and including the access identifier (§6: the signed data)
    kind: str  # one of ACCESS_KINDS
    access_user: str | None  # the userid of "submit+" and "user+", %-decoded
    expire: float | None  # seconds since the epoch; None: no expiry
    mechanism: str | None  # upper case; None in a rump (GENURLAUTH's argument)
    token: str | None  # lower-case hex


@dataclass(frozen=True)
class ImapUrl:
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str  # "" for the whole message
    partial: tuple[int, int | None] | None  # (offset, length): RFC 5092 §6, RFC 5550
    user: str | None
    host: str | None
    auth: Authorization | None = None


# RFC 5092 §11: [imap://[user[;AUTH=x]@]host[:port]] "/" enc-mailbox [";UIDVALIDITY=" n]
# "/;UID=" n ["/;SECTION=" enc-section] ["/;PARTIAL=" n ["." n]]
_SERVER = re.compile(r"(?i)^imap://(?:(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@)?(?P<host>[^/]+)(?=/)")
_PATH = re.compile(
    r"(?i)^/(?P<mailbox>[^;]+?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/;]+))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]{1,10})(?:\.(?P<length>[1-9][0-9]{0,9}))?)?$"
)
# RFC 4467 §9: [";EXPIRE=" date-time] ";URLAUTH=" access [":" mechanism ":" 32*HEXDIG]
_URLAUTH = re.compile(
    r"(?i)(?:;EXPIRE=(?P<expire>[^;/]+))?;URLAUTH="
    r"(?P<access>(?P<kind>submit|user)\+(?P<who>[^:;/@]+)|authuser|anonymous)"
    r"(?::(?P<mech>[A-Za-z0-9.-]+):(?P<token>[0-9A-Fa-f]{32,}))?$"
)
_AUTH_MARK = re.compile(r"(?i);(?:EXPIRE|URLAUTH)=")
_URLAUTH_MARK = re.compile(r"(?i);URLAUTH=")
_HEX_TAIL = re.compile(r"(?i)[0-9a-f]*+(\n?)")


def _decode(text: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUrl("not UTF-8 once %-decoded") from None


def _expiry(text: str) -> float:
    """RFC 3339 date-time (RFC 4467 §9 `expire`), with its offset or Z."""
    try:
        when = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadUrl("EXPIRE is not an RFC 3339 date-time") from None
    if when.tzinfo is None:
        raise BadUrl("EXPIRE has no time zone offset")
    return when.timestamp()


def parse_message_url(url: str, urlauth: bool = False) -> ImapUrl:
    """Parse an absolute or server-relative IMAP URL naming a message (RFC 5092 §6); with
    `urlauth`, a URLAUTH-authorized one (RFC 4467 §3) is accepted and its token kept."""
    user = host = None
    rest = url
    m = _SERVER.match(url)
    if m:
        user = _decode(m.group("user")) if m.group("user") else None
        host = m.group("host").lower()
        rest = url[m.end() :]
    elif not url.startswith("/"):
        raise BadUrl("neither an imap:// URL nor a path")
    auth = None
    mark = _AUTH_MARK.search(rest)
    if mark is not None:
        if not urlauth:
            raise BadUrl("URLAUTH is not offered here")
        auth = _authorization(url, rest[mark.start() :], len(url) - len(rest) + mark.start())
        rest = rest[: mark.start()]
    p = _PATH.match(rest)
    if not p:
        raise BadUrl("does not name one message")
    length = p.group("length")
    return ImapUrl(
        mailbox=_decode(p.group("mailbox")),
        uidvalidity=int(p.group("uidvalidity")) if p.group("uidvalidity") else None,
        uid=int(p.group("uid")),
        section=_decode(p.group("section") or ""),
        partial=(int(p.group("offset")), int(length) if length else None)
        if p.group("offset") is not None
        else None,
        user=user,
        host=host,
        auth=auth,
    )


def _authorization(url: str, tail: str, start: int) -> Authorization:
    a = _URLAUTH.match(tail)
    if a is None:
        raise BadUrl("malformed URLAUTH")
    # RFC 4467 §6: the rump is the URL with ":<mech>:<token>" cut off, nothing else changed
    # (no %-decoding, no case folding).
    rump = url[: start + a.end("access")]
    kind = (a.group("kind") or a.group("access")).lower()
    mech = a.group("mech")
    return Authorization(
        rump=rump,
        kind=kind,
        access_user=_decode(a.group("who")) if a.group("who") else None,
        expire=_expiry(a.group("expire")) if a.group("expire") else None,
        mechanism=mech.upper() if mech else None,
        token=a.group("token").lower() if a.group("token") else None,
    )


def parse_url_rump(url: str) -> ImapUrl:
    """GENURLAUTH's argument (RFC 4467 §7): an absolute URL with the owner's userid, ending in
    ";URLAUTH=<access>" without mechanism or token."""
    ref = parse_message_url(url, urlauth=True)
    if ref.host is None or not ref.user:
        raise BadUrl("missing owner userid in the URL")
    if ref.auth is None:
        raise BadUrl("missing access identifier in the URL")
    if ref.auth.token is not None:
        raise BadUrl("the URL is already authorized")
    return ref


def without_token(url: str) -> str:
    """The URL with its ":<mech>:<token>" cut off, for a log line: the token is a credential
    (whoever holds the whole URL may use it).

    The URL is the client's: the tail is found from its last colons, not by a pattern tried
    from every ";URLAUTH=" in it (each of which read on to the end)."""
    # ";URLAUTH=" access ":" mech ":" hex at the very end: the mark lies between the third
    # last colon and the second last one, the token after the last.
    last = url.rfind(":")
    mech = url.rfind(":", 0, max(last, 0))
    if mech < 0:
        return url
    tail = _HEX_TAIL.fullmatch(url, last + 1)
    mark = _URLAUTH_MARK.search(url, url.rfind(":", 0, mech) + 1, mech)
    if tail is None or mark is None:
        return url
    return url[:mech] + ":…" + tail.group(1)
