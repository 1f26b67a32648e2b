"""URLAUTH (RFC 4467): signing URLs and resolving them, the one resolver that IMAP's URLFETCH
and the submission server's BURL (RFC 4468) share.

INTERNAL mechanism: the token is "01" (this algorithm's version, as §2.4.1 and §10 advise)
followed by the hex HMAC-SHA1 of the rump URL keyed with the mailbox access key.  Key
lookups, token checks and message reads run in the durable-I/O pool; the folder's index is
consulted on the reactor.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.message.lines import to_wire
from mailsuite.store import BadFolderName, NoSuchFolder, NoSuchMailbox, Store
from mailsuite.urlauth.keys import KEY_BYTES, AccessKeys
from mailsuite.urlauth.url import BadUrl, ImapUrl, parse_message_url, parse_url_rump

__all__ = [
    "MECHANISMS",
    "NotAuthorized",
    "NotFound",
    "Requester",
    "TrustRequired",
    "UrlAuthority",
    "UrlRefused",
]

MECHANISMS = ("INTERNAL",)
_TOKEN_VERSION = "01"

# The bytes a section names in a message's stored bytes (None: no such part); IMAP's
# BODY[section] rules, handed in at wiring so that this layer needs no IMAP code.
SectionReader = Callable[[bytes, str], "bytes | None"]
# What a caller makes of the stored message a URL names (IMAP's extended URLFETCH: the part
# decoded, its structure); run in the durable-I/O pool, it raises NotFound for no such part.
Extractor = Callable[[bytes, ImapUrl], object]


class UrlRefused(Exception):
    """A URL that resolves to nothing for this requester (URLFETCH answers NIL)."""


class NotAuthorized(UrlRefused):
    """Wrong or expired token, or an access identifier that excludes the requester."""


class NotFound(UrlRefused):
    """The mailbox, message or part the URL names is not there (any more)."""


class TrustRequired(UrlRefused):
    """A URL without URLAUTH where only URLAUTH-authorized URLs are taken (BURL)."""


@dataclass(frozen=True)
class Requester:
    """Who asks: the logged-in user, and whether as the submission server acting for that
    user (RFC 4467 §3 "submit+", RFC 4468 §3.3)."""

    user: str
    submission: bool = False


def _same_user(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


class UrlAuthority:
    """GENURLAUTH, RESETKEY and URL resolution over one store's access keys."""

    def __init__(
        self,
        store: Store,
        keys: AccessKeys,
        section_reader: SectionReader | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = keys
        self.section_reader = section_reader
        self.clock = clock

    @staticmethod
    def _token(key: bytes, rump: str) -> str:
        return _TOKEN_VERSION + hmac.new(key, rump.encode("utf-8"), hashlib.sha1).hexdigest()

    # --- GENURLAUTH / RESETKEY ---------------------------------------------------------------

    def _folder(self, owner: str, mailbox: str) -> defer.Deferred:
        """Deferred[Folder]: the owner's folder, in step with the disk; NotFound when there
        is none.  A folder not in memory yet is loaded, and one another program changed
        (three stats say so) is listed, in the durable pool: the reactor never lists."""
        try:
            mbox = self.store.mailbox(owner)
            if not mbox.is_loaded(mailbox):
                return self.store.io.submit(_load_folder, mbox, mailbox)
            folder = mbox.folder(mailbox)
        except (NoSuchMailbox, NoSuchFolder, BadFolderName):
            return defer.fail(NotFound("no such mailbox"))
        if not folder.needs_listing():
            return defer.succeed(folder)

        def unlisted(failure):
            failure.trap(OSError)  # the index as it was: the message read tells what is there

        d = folder.listing_after_ops(self.store.io.submit)
        d.addCallbacks(folder.apply_listing, unlisted)
        return d.addCallback(lambda _: folder)

    def generate(self, owner: str, rump_url: str, mechanism: str) -> defer.Deferred:
        """Deferred[str]: the URLAUTH-authorized URL (RFC 4467 §5); BadUrl for what §7 makes a
        BAD: no owner or access identifier, another user's key table, a missing mailbox."""
        try:
            if mechanism.upper() not in MECHANISMS:
                raise BadUrl(f"unknown URLAUTH mechanism {mechanism[:40]}")
            ref = parse_url_rump(rump_url)
            if not _same_user(ref.user, owner):
                raise BadUrl("only the owner's mailbox access keys can sign")
        except BadUrl as e:
            return defer.fail(e)

        def missing(failure):
            failure.trap(NotFound)
            raise BadUrl("no such mailbox")

        def sign(folder):
            return self.store.io.submit(
                self._sign, owner, folder.name, folder.uidvalidity, ref.auth.rump
            )

        return self._folder(owner, ref.mailbox).addCallbacks(sign, missing)

    def _sign(self, owner: str, mailbox: str, uidvalidity: int, rump: str) -> str:
        key = self.keys.key_for(owner, mailbox, uidvalidity)
        return f"{rump}:internal:{self._token(key, rump)}"

    def reset(self, owner: str, mailbox: str | None = None) -> defer.Deferred:
        """RESETKEY (RFC 4467 §7); NotFound when the named mailbox does not exist."""
        if mailbox is None:
            return self.store.io.submit(self.keys.reset_all, owner)
        return self._folder(owner, mailbox).addCallback(
            lambda folder: self.store.io.submit(
                self.keys.reset, owner, folder.name, folder.uidvalidity
            )
        )

    # --- resolution ---------------------------------------------------------------------------

    def fetch(
        self,
        url: str,
        requester: Requester,
        plain: bool = True,
        extract: Extractor | None = None,
    ) -> defer.Deferred:
        """Deferred[bytes]: what the URL names, with CRLF line ends (RFC 4467 §7 URLFETCH);
        with `extract`, what extract(stored message, parsed URL) returns instead.

        A URLAUTH URL is checked against its token, expiry and access identifier; with
        `plain`, a URL without URLAUTH is read as the requester's own (RFC 5092); otherwise it
        is TrustRequired.  Errbacks with BadUrl or a UrlRefused.  For a URLAUTH URL nothing
        but its syntax, expiry and access identifier is told before the token is checked: a
        missing mailbox or message fails that check like a wrong token (RFC 4467 §6)."""
        try:
            ref, owner = self._authorize(url, requester, plain)
        except (BadUrl, UrlRefused) as e:
            return defer.fail(e)

        def opened(folder):
            msg = None
            keyed = None  # (mailbox, uidvalidity): whose access key signs the URL
            if folder is not None:
                keyed = (folder.name, folder.uidvalidity)
                if ref.uidvalidity in (None, folder.uidvalidity):
                    msg = folder.by_uid(ref.uid)
            if ref.auth is None and msg is None:
                raise NotFound("no such message")
            return self.store.io.submit(self._resolve, owner, keyed, folder, msg, ref, extract)

        def missing(failure):
            failure.trap(NotFound)
            if ref.auth is None:
                return failure
            return opened(None)  # checked like a wrong token (RFC 4467 §6)

        return self._folder(owner, ref.mailbox).addCallbacks(opened, missing)

    def _authorize(self, url: str, requester: Requester, plain: bool) -> tuple[ImapUrl, str]:
        """The URL and the user whose mailbox it reads, once the requester may use it."""
        ref = parse_message_url(url, urlauth=True)
        auth = ref.auth
        if auth is None:
            if not plain:
                raise TrustRequired("only URLAUTH-authorized URLs are resolved here")
            if ref.user is not None and not _same_user(ref.user, requester.user):
                raise NotAuthorized("another user's mailbox")
            return ref, requester.user
        if ref.host is None or not ref.user:
            raise BadUrl("a URLAUTH URL names its owner and server")
        if auth.token is None or auth.mechanism not in MECHANISMS:
            raise NotAuthorized("no token of a known mechanism")
        # RFC 4467 §3: after the EXPIRE time the URL MUST be rejected.
        if auth.expire is not None and self.clock() > auth.expire:
            raise NotAuthorized("expired")
        if not self._may_use(auth.kind, auth.access_user, requester):
            raise NotAuthorized("the access identifier excludes this requester")
        return ref, ref.user

    @staticmethod
    def _may_use(kind: str, access_user: str | None, requester: Requester) -> bool:
        """RFC 4467 §3 access identifiers.  The submission server takes "submit+" URLs only,
        and only for the user who authenticated to it (RFC 4468 §3.3): a URL made for IMAP
        readers is not a licence to send the message on."""
        if requester.submission:
            return kind == "submit" and _same_user(access_user, requester.user)
        if kind == "user":
            return _same_user(access_user, requester.user)
        return kind in ("authuser", "anonymous")

    def _resolve(self, owner: str, keyed, folder, msg, ref: ImapUrl, extract=None):
        """In the durable pool: the token checked in constant time, then the data read."""
        if ref.auth is not None:
            key = None
            if keyed is not None:
                key = self.keys.existing(owner, *keyed)
            if key is None:
                # RFC 4467 §6: a "plausible" key for a mailbox that cannot be identified, so
                # that the time taken does not tell which mailboxes exist.
                key = secrets.token_bytes(KEY_BYTES)
            if not hmac.compare_digest(self._token(key, ref.auth.rump), ref.auth.token):
                raise NotAuthorized("token does not match")
            if msg is None:
                raise NotFound("no such message")
        raw = folder.read_present(msg)
        if raw is None:
            raise NotFound("the message was expunged")
        if extract is not None:
            return extract(raw, ref)
        if not ref.section:
            data = to_wire(raw)
        elif self.section_reader is None:
            raise NotFound("sections are not resolved here")
        else:
            data = self.section_reader(raw, ref.section)
            if data is None:
                raise NotFound("no such section")
        if ref.partial is not None:
            # RFC 5092 §6 / RFC 5550 §5: ;PARTIAL=offset[.length] of the named data.
            start, length = ref.partial
            data = data[start:] if length is None else data[start : start + length]
        return data


def _load_folder(mbox, name: str):
    """In the durable pool: a folder's first load (it lists the folder, and writes its uidlist
    when it has none); NotFound when there is no such folder."""
    try:
        return mbox.folder(name)
    except (NoSuchFolder, BadFolderName):
        raise NotFound("no such mailbox") from None
