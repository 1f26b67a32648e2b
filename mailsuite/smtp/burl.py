"""BURL (RFC 4468): message content taken from an IMAP URL instead of the client's upload,
alone or between BDAT chunks (§3.2), on the submission listeners only.

A mixin of `SmtpSession` beside `TransactionCommands`.  The URL is resolved in process by the
same resolver as IMAP's URLFETCH (`services.urlauth`), as the submission entity acting for the
authenticated user: only URLAUTH URLs with "submit+<that user>" access (RFC 4468 §3.3) are
taken, so a URL sent to another user cannot be submitted by them.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsuite.logtext import visible
from mailsuite.smtp.parser import SmtpReply
from mailsuite.smtp.transaction import SUBMISSION_KINDS, Transaction
from mailsuite.urlauth import (
    BadUrl,
    NotAuthorized,
    NotFound,
    Requester,
    TrustRequired,
    without_token,
)

log = Logger(namespace="mailsuite.smtp")

# RFC 4468 §3.1: "BURL imap" says URLAUTH URLs are resolved; it is shown once authenticated,
# a bare "BURL" before, which tells the client that AUTH comes first.
EHLO_KEYWORD = "BURL imap"
EHLO_KEYWORD_BEFORE_AUTH = "BURL"


def parse_burl(arg: str) -> tuple[str, bool]:
    """RFC 4468 §3.5: `BURL absolute-URI [SP "LAST"]`."""
    words = arg.split(" ")
    if not 1 <= len(words) <= 2 or not words[0] or (len(words) == 2 and words[1].upper() != "LAST"):
        raise SmtpReply(501, "5.5.4", "Syntax: BURL imap-url [LAST]")
    return words[0], len(words) == 2


def _refusal(failure: Failure) -> SmtpReply:
    """RFC 4468 §6 reply codes for a URL that did not resolve."""
    if failure.check(TrustRequired):
        return SmtpReply(554, "5.7.8", "URL resolution requires trust relationship")
    if failure.check(NotAuthorized):
        return SmtpReply(554, "5.7.0", "IMAP URL authorization failed")
    if failure.check(BadUrl, NotFound):
        return SmtpReply(554, "5.6.6", "IMAP URL resolution failed")
    return SmtpReply(451, "4.4.1", "IMAP server unavailable")


class BurlCommands:
    """The BURL command, for `SmtpSession`."""

    def ehlo_burl(self) -> list[str]:
        """The EHLO line for BURL: only on submission listeners, never on port 25."""
        if self.kind not in SUBMISSION_KINDS:
            return []
        return [EHLO_KEYWORD if self.user is not None else EHLO_KEYWORD_BEFORE_AUTH]

    def smtp_BURL(self, arg: str) -> None:
        if self.kind not in SUBMISSION_KINDS:
            # RFC 4468 §3.1: BURL MUST NOT be offered by a port-25 relay.
            raise SmtpReply(502, "5.5.1", "Error: command BURL not implemented")
        url, last = parse_burl(arg)
        tx = self.tx
        if tx is None:
            raise SmtpReply(503, "5.5.1", "Error: need MAIL command")
        if not tx.recipients:
            # RFC 4468 §3.2: without a valid RCPT the URL is not resolved at all.
            raise SmtpReply(554, "5.5.0", "No recipients have been specified")
        if tx.failed:
            raise SmtpReply(503, "5.5.1", "Error: transaction failed, send RSET")
        d = self.services.urlauth.fetch(url, Requester(self.user, submission=True), plain=False)
        self.busy = True
        d.addCallbacks(self._burl_resolved, self._burl_refused, (tx, last), None, (tx, url))

    def _burl_resolved(self, data: bytes, tx: Transaction, last: bool) -> None:
        self.busy = False
        if self.mode == "closed" or self.tx is not tx:
            return
        try:
            self._burl_content(tx, data, last)
        except SmtpReply as e:
            self._reply_error(e)
        self._burl_continue()

    def _burl_content(self, tx: Transaction, data: bytes, last: bool) -> None:
        body = self.body = self.message_body(tx)
        body.feed(data)
        self.hold_body()
        if last:
            body.finish()
            self._end_of_message()
            return
        if body.refusal is not None:
            tx.failed = True
            raise body.refusal
        if body.too_big:
            tx.failed = True
            raise SmtpReply(554, "5.3.4", "Message too big for system")
        self._reply(250, "2.5.0", "Waiting for additional BURL or BDAT commands")

    def _burl_refused(self, failure: Failure, tx: Transaction, url: str) -> None:
        self.busy = False
        if self.mode == "closed":
            return
        reply = _refusal(failure)
        if reply.code == 451:
            log.failure("smtp {ip}: BURL failed", failure, ip=self.client_ip)
        else:
            log.info(
                "smtp {ip}: BURL refused for {user}: {url}: {why}",
                ip=self.client_ip,
                user=visible(self.user),
                url=visible(without_token(url)),
                why=str(failure.value),
            )
        # RFC 4468 §3.2: a URL that cannot be fetched fails the whole transaction.
        tx.failed = True
        self._reply_error(reply)
        self._burl_continue()

    def _burl_continue(self) -> None:
        if not self.busy and self.mode != "closed":
            self.process()
