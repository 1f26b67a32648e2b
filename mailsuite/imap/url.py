"""IMAP URLs (RFC 5092) naming one message or a part of it, as CATENATE (RFC 4469) uses them.

Only what a session may read itself is accepted: the session's own mailboxes, no URLAUTH
(`;EXPIRE=`, `;URLAUTH=`), no other server's host.  Syntax only; opening the message is the
caller's job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

__all__ = ["ImapUrl", "BadUrl", "parse_message_url"]


class BadUrl(ValueError):
    """A URL this server cannot or will not resolve (IMAP response code BADURL)."""


@dataclass(frozen=True)
class ImapUrl:
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str  # "" for the whole message
    partial: tuple[int, int | None] | None  # (offset, length)
    user: str | None
    host: str | None


# RFC 5092 §11: [imap://[user[;AUTH=x]@]host[:port]] "/" enc-mailbox [";UIDVALIDITY=" n]
# "/;UID=" n ["/;SECTION=" enc-section] ["/;PARTIAL=" n ["." n]]
_SERVER = re.compile(r"(?i)^imap://(?:(?P<user>[^@/;]*)(?:;AUTH=[^@/]*)?@)?(?P<host>[^/]+)(?=/)")
_PATH = re.compile(
    r"(?i)^/(?P<mailbox>[^;]+?)(?:;UIDVALIDITY=(?P<uidvalidity>[1-9][0-9]{0,9}))?"
    r"/;UID=(?P<uid>[1-9][0-9]{0,9})"
    r"(?:/;SECTION=(?P<section>[^/;]+))?"
    r"(?:/;PARTIAL=(?P<offset>[0-9]{1,10})(?:\.(?P<length>[1-9][0-9]{0,9}))?)?$"
)


def _decode(text: str) -> str:
    try:
        return unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise BadUrl("not UTF-8 once %-decoded") from None


def parse_message_url(url: str) -> ImapUrl:
    """Parse an absolute or server-relative IMAP URL naming a message (RFC 5092 §6)."""
    user = host = None
    rest = url
    m = _SERVER.match(url)
    if m:
        user = _decode(m.group("user")) if m.group("user") else None
        host = m.group("host").lower()
        rest = url[m.end() :]
    elif not url.startswith("/"):
        raise BadUrl("neither an imap:// URL nor a path")
    if re.search(r"(?i);(EXPIRE|URLAUTH)=", rest):
        raise BadUrl("URLAUTH is not offered")
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
    )
