"""POP3 AUTHORIZATION state (RFC 1939 §4): CAPA (RFC 2449), STLS (RFC 2595), UTF8 (RFC 6856),
USER/PASS and AUTH (RFC 5034, the shared SASL dialogue), and opening the maildrop.

A mixin of `Pop3Session`: it uses the session's state and its `conn` and `_write`.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.accounts.checker import AuthFailed, AuthThrottled
from mailsuite.logtext import visible
from mailsuite.pop3.maildrop import Entry, Maildrop
from mailsuite.pop3.parser import (
    AUTH,
    CRLF,
    IN_USE,
    LOGIN_DELAY,
    SYS_PERM,
    SYS_TEMP,
    CapaOptions,
    Pop3Error,
    capa_lines,
    format_uidl,
    multiline,
    ok,
)
from mailsuite.store import NoSuchFolder, NoSuchMailbox

log = Logger(namespace="mailsuite.pop3")

AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"

PLAINTEXT_REFUSED = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


class AuthorizationCommands:
    """The AUTHORIZATION-state commands (and CAPA), for `Pop3Session`."""

    def _login_allowed(self) -> bool:
        return self.services.plaintext_auth_allowed(self.conn.is_secure(), self.client_ip)

    def _capa(self, args):
        opts = CapaOptions(
            stls=self._stls_possible(),
            login_allowed=self._login_allowed(),
            transaction=self.state != AUTHORIZATION,
            sasl_mechanisms=sasl.MECHANISMS,
            expire=self.config.pop3.expire,
            login_delay=self.config.pop3.login_delay,
        )
        self._write(multiline(ok("Capability list follows"), capa_lines(opts)))

    def _stls_possible(self) -> bool:
        return self.kind == "pop3" and self.services.tls is not None and not self.conn.is_secure()

    def _stls(self, args):
        if not self._stls_possible():
            raise Pop3Error("TLS is already active or not available.")
        dropped = self.reader.discard()
        if dropped:
            # RFC 2595 §4 / DESIGN: nothing sent in clear after STLS may be executed.
            log.info("pop3 #{sid} dropped {n} octets after STLS", sid=self.session_id, n=dropped)
        self.user = None
        self._write([ok("Begin TLS negotiation now.")])
        self.conn.start_tls()
        self.services.metrics.tls_started(self.kind)

    def _utf8(self, args):
        # RFC 6856 §2: only in AUTHORIZATION; afterwards names and text may be UTF-8.
        self.utf8 = True
        self._write([ok("UTF8 enabled.")])

    def _user(self, args):
        if not self._login_allowed():
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if not args or not args[0]:
            raise Pop3Error("No username given.", bad=True)
        self.user = args[0]
        self._write([ok()])

    def _pass(self, args):
        if not self._login_allowed():
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if self.user is None:
            raise Pop3Error("No username given.")
        user, self.user = self.user, None
        password = args[0] if args else ""
        d = self.services.authenticator.login(user, password, self.client_ip, "pop3")
        return self._login(d, user)

    def _auth(self, args):
        allowed = self._login_allowed()
        if not allowed:
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if not args:
            # Old clients send bare AUTH to get the mechanism list (pre-RFC 5034 behaviour).
            lines = [m.encode("ascii") for m in sasl.MECHANISMS]
            self._write(multiline(ok(), lines))
            return None
        dialogue = sasl.SaslDialogue(
            self.services.authenticator, self.client_ip, "pop3", plaintext_allowed=allowed
        )
        initial = args[1] if len(args) > 1 else None
        return self._sasl_outcome(dialogue, dialogue.start(args[0], initial))

    def _sasl_step(self, line: bytes):
        dialogue, self.sasl = self.sasl, None
        return self._sasl_outcome(dialogue, dialogue.respond(line))

    def _sasl_outcome(self, dialogue: sasl.SaslDialogue, outcome: sasl.Outcome):
        """One dialogue outcome on the wire: `+ ` challenge, -ERR, or the login."""
        if isinstance(outcome, sasl.SendChallenge):
            self.sasl = dialogue  # the next line is the response
            # RFC 5034 §4: a continuation is "+ " and the base64 challenge.
            self._write([b"+ " + outcome.encoded + CRLF])
            return None
        if isinstance(outcome, sasl.Pending):
            # SCRAM's key lookup: the session holds the input until the next outcome is out.
            def resumed(next_outcome: sasl.Outcome):
                if self.lost:
                    dialogue.abort()
                    return None
                return self._sasl_outcome(dialogue, next_outcome)

            return outcome.deferred.addCallback(resumed)
        if isinstance(outcome, sasl.Ready):
            return self._login(dialogue.login(outcome.credentials), outcome.credentials.username)
        if isinstance(outcome, sasl.UnknownMechanism):
            raise Pop3Error("Unsupported authentication mechanism.")
        if isinstance(outcome, sasl.EncryptionRequired):
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if isinstance(outcome, sasl.Cancelled):
            # RFC 5034 §4: "*" cancels; the server answers -ERR.
            raise Pop3Error("Authentication cancelled.", AUTH)
        if isinstance(outcome, sasl.IdentityRefused):
            raise Pop3Error("Authorization identity not permitted.", AUTH)
        raise Pop3Error("Invalid SASL response.", AUTH)  # BadEncoding, BadResponse

    def _login(self, d: defer.Deferred, username: str) -> defer.Deferred:
        """The reply to USER/PASS or AUTH once the Authenticator has answered `d`."""

        def failed(failure):
            if failure.check(AuthFailed):
                log.info(
                    "pop3 #{sid} login failed for {user} from {ip}",
                    sid=self.session_id,
                    user=visible(username),
                    ip=self.client_ip,
                )
                raise Pop3Error("Authentication failed.", AUTH, bad=True)
            if failure.check(AuthThrottled):
                raise Pop3Error("Too many failed logins; try again later.", SYS_TEMP)
            if failure.check(Pop3Error):
                return failure
            log.failure("pop3 #{sid} authentication error", failure, sid=self.session_id)
            raise Pop3Error("Temporary authentication failure.", SYS_TEMP)

        d.addCallbacks(self._load_inbox, failed)
        d.addCallback(self._open_maildrop)
        return d

    def _load_inbox(self, address: str):
        """INBOX, when it is not in memory yet, is loaded in the durable pool first (its first
        load lists it, and writes its uidlist when it has none); `_open_maildrop` then finds
        it loaded.  The address, or a Deferred of it."""
        store = self.services.store
        try:
            mailbox = store.mailbox(address)
            if mailbox.is_loaded("INBOX"):
                return self._sync_inbox(mailbox.folder("INBOX"), address)
        except NoSuchMailbox:
            return address  # _open_maildrop says so
        return store.io.submit(_load_inbox, mailbox).addCallback(lambda _: address)

    def _sync_inbox(self, folder, address: str):
        """A loaded INBOX that another program changed (three stats say so) is listed in the
        durable pool, after the folder's own queued renames and unlinks, before the maildrop
        is made (RFC 1939 §4: the maildrop as it is at login).  The address, or a Deferred
        of it; a listing that fails leaves the index as it was."""
        if not folder.needs_listing():
            return address

        def unlisted(failure):
            failure.trap(OSError)
            log.warn(
                "pop3 #{sid} listing INBOX of {addr} failed: {err}",
                sid=self.session_id,
                addr=visible(address),
                err=visible(str(failure.value)),
            )

        d = folder.listing_after_ops(self.services.store.io.submit)
        d.addCallbacks(folder.apply_listing, unlisted)
        return d.addCallback(lambda _: address)

    def _open_maildrop(self, address: str) -> None:
        if self.lost:
            return
        left = self.server_state.login_delay_left(address, self.config.pop3.login_delay)
        if left:
            # RFC 2449 §8.1.1: logging in again before LOGIN-DELAY has passed.
            raise Pop3Error(f"Wait {int(left) + 1} seconds before logging in again.", LOGIN_DELAY)
        if not self.server_state.acquire(address, self):
            raise Pop3Error("Mailbox is locked by another POP3 session.", IN_USE)
        try:
            mailbox = self.services.store.mailbox(address)
            folder = mailbox.folder("INBOX")  # loaded and listed by _load_inbox
        except NoSuchMailbox:
            self.server_state.release(address, self)
            log.warn(
                "pop3 #{sid} {addr} has no mailbox", sid=self.session_id, addr=visible(address)
            )
            raise Pop3Error("Mailbox unavailable.", SYS_PERM) from None
        except OSError:
            self.server_state.release(address, self)
            log.failure(
                "pop3 #{sid} opening INBOX of {addr}", sid=self.session_id, addr=visible(address)
            )
            raise Pop3Error("Mailbox unavailable.", SYS_TEMP) from None
        self.address, self.mailbox, self.folder = address, mailbox, folder
        fmt = self.config.pop3.uidl_format
        uidvalidity = folder.uidvalidity
        self.maildrop = Maildrop(
            (Entry(m.uid, m.wire_size, m.key) for m in folder.messages),
            lambda e: format_uidl(fmt, e.uid, uidvalidity, e.key),
            self.server_state.shared_listings(
                folder, (folder.membership_version, uidvalidity, fmt)
            ),
        )
        self.server_state.record_login(address)
        self.state = TRANSACTION
        count, octets = self.maildrop.stat()
        log.info(
            "pop3 #{sid} login {addr} from {ip}: {n} messages",
            sid=self.session_id,
            addr=visible(address),
            ip=self.client_ip,
            n=count,
        )
        self._write([ok("Logged in.")])


def _load_inbox(mailbox) -> None:
    try:
        mailbox.folder("INBOX")
    except (NoSuchFolder, OSError):
        pass  # _open_maildrop tries again and says what is wrong, on the reactor
