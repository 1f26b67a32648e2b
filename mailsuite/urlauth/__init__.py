"""URLAUTH (RFC 4467): IMAP URLs (RFC 5092) that carry their own authorization, the mailbox
access keys that sign them, and the one resolver that IMAP's URLFETCH and CATENATE and the
submission server's BURL (RFC 4468) read messages through."""

from mailsuite.urlauth.keys import AccessKeys
from mailsuite.urlauth.resolver import (
    MECHANISMS,
    NotAuthorized,
    NotFound,
    Requester,
    TrustRequired,
    UrlAuthority,
    UrlRefused,
)
from mailsuite.urlauth.url import (
    BadUrl,
    ImapUrl,
    parse_message_url,
    parse_url_rump,
    without_token,
)

__all__ = [
    "MECHANISMS",
    "AccessKeys",
    "BadUrl",
    "ImapUrl",
    "NotAuthorized",
    "NotFound",
    "Requester",
    "TrustRequired",
    "UrlAuthority",
    "UrlRefused",
    "parse_message_url",
    "parse_url_rump",
    "without_token",
]
