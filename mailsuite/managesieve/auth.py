"""STARTTLS, AUTHENTICATE and UNAUTHENTICATE (RFC 5804 §2.1, §2.2, §2.14.1) through the SASL
dialogue every protocol shares, and the capability response they change.

A mixin of `ManageSieveSession`: it uses the session's state, reader, `conn` and `_write`.
"""

from __future__ import annotations

import base64

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite import sasl
from mailsuite.accounts.checker import AuthFailed, AuthThrottled
from mailsuite.logtext import visible
from mailsuite.managesieve import response as R
from mailsuite.managesieve.capability import capability_pairs
from mailsuite.managesieve.parser import Atom, Line
from mailsuite.managesieve.response import SieveNo
from mailsuite.managesieve.store import open_store

log = Logger(namespace="mailsuite.managesieve")

NONAUTH, AUTHENTICATED = "NONAUTH", "AUTHENTICATED"

PLAINTEXT_REFUSED = "Plaintext authentication disallowed without TLS."


class AuthCommands:
    """The commands that change who the session is, for `ManageSieveSession`."""

    def plaintext_allowed(self) -> bool:
        return self.services.plaintext_auth_allowed(self.conn.is_secure(), self.client_ip)

    def starttls_possible(self) -> bool:
        return self.services.tls is not None and not self.conn.is_secure()

    def capability_response(self, text: str) -> list[bytes]:
        """RFC 5804 §1.7: the capability lines and the OK that ends them."""
        pairs = capability_pairs(
            mechanisms=sasl.MECHANISMS if self.plaintext_allowed() else (),
            starttls=self.state == NONAUTH and self.starttls_possible(),
            owner=self.address,
            max_redirects=self.config.sieve.max_redirects,
        )
        return [*R.capability_lines(pairs), R.ok(text)]

    def _starttls(self, args):
        if args:
            raise SieveNo("STARTTLS takes no arguments.", bad=True)
        if not self.starttls_possible():
            raise SieveNo("TLS is already active or not available.")
        dropped = self.reader.discard()
        if dropped:
            # DESIGN: nothing sent in clear after STARTTLS may run.
            log.info(
                "managesieve #{sid} dropped {n} octets after STARTTLS",
                sid=self.session_id,
                n=dropped,
            )
        self._write([R.ok("Begin TLS negotiation now.")])
        self.conn.start_tls()
        # RFC 5804 §2.2: after the handshake the server sends the capabilities again, since
        # SASL mechanisms may have changed; written now, they go out once TLS is up.
        self._write(self.capability_response("TLS negotiation successful."))

    def _authenticate(self, args):
        if not 1 <= len(args) <= 2:
            raise SieveNo(
                "AUTHENTICATE needs a mechanism and at most an initial response.", bad=True
            )
        mech = _text(args[0], "mechanism")
        self.sasl_mechanism = mech.upper()
        initial = args[1] if len(args) > 1 else None
        if isinstance(initial, Atom):
            initial = initial.text.encode("ascii")
        allowed = self.plaintext_allowed()
        dialogue = sasl.SaslDialogue(
            self.services.authenticator, self.client_ip, "managesieve", plaintext_allowed=allowed
        )
        return self._sasl_outcome(dialogue, dialogue.start(mech, initial))

    def _sasl_response(self, dialogue: sasl.SaslDialogue, line: Line):
        """RFC 5804 §2.1: each client response is one string ("*" cancels)."""
        if len(line.tokens) != 1:
            dialogue.abort()
            raise SieveNo("Invalid SASL response.", bad=True)
        token = line.tokens[0]
        data = token.text.encode("ascii") if isinstance(token, Atom) else token
        return self._sasl_outcome(dialogue, dialogue.respond(data))

    def _sasl_outcome(self, dialogue: sasl.SaslDialogue, outcome: sasl.Outcome):
        """One dialogue outcome on the wire: a challenge string, NO, or the login."""
        if isinstance(outcome, sasl.SendChallenge):
            if outcome.data.startswith(b"v=") and self.sasl_mechanism.startswith("SCRAM-"):
                # RFC 5804 §2.1: SCRAM's server-final message rides in the OK (SASL "...")
                # that ends the exchange, as Dovecot and Cyrus send it, rather than as a
                # challenge waiting for an empty response.
                final = dialogue.respond(b"")
                if isinstance(final, sasl.Ready):
                    d = dialogue.login(final.credentials)
                    return self._login(d, final.credentials.username, outcome.data)
                return self._sasl_outcome(dialogue, final)
            self.sasl = dialogue  # the next command frame is the response
            # RFC 5804 §2.1: a challenge is a string holding base64.
            self._write([R.string(outcome.encoded) + R.CRLF])
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
            raise SieveNo("Unsupported authentication mechanism.")
        if isinstance(outcome, sasl.EncryptionRequired):
            # RFC 5804 §1.3: ENCRYPT-NEEDED, the connection must be encrypted first.
            raise SieveNo(PLAINTEXT_REFUSED, R.ENCRYPT_NEEDED)
        if isinstance(outcome, sasl.Cancelled):
            # RFC 5804 §2.1: "*" cancels; the server answers NO.
            raise SieveNo("Authentication cancelled.")
        if isinstance(outcome, sasl.IdentityRefused):
            raise SieveNo("Authorization identity not permitted.")
        raise SieveNo("Invalid SASL response.")  # BadEncoding, BadResponse

    def _login(
        self, d: defer.Deferred, username: str, server_final: bytes | None = None
    ) -> defer.Deferred:
        """The response to AUTHENTICATE once the Authenticator has answered `d`."""

        def failed(failure):
            if failure.check(AuthFailed):
                log.info(
                    "managesieve #{sid} login failed for {user} from {ip}",
                    sid=self.session_id,
                    user=visible(username),
                    ip=self.client_ip,
                )
                raise SieveNo("Authentication failed.", bad=True)
            if failure.check(AuthThrottled):
                raise SieveNo("Too many failed logins; try again later.", R.TRYLATER)
            if failure.check(SieveNo):
                return failure
            log.failure("managesieve #{sid} authentication error", failure, sid=self.session_id)
            raise SieveNo("Temporary authentication failure.", R.TRYLATER)

        d.addCallbacks(self._logged_in, failed, callbackArgs=(server_final,))
        return d

    def _logged_in(self, address: str, server_final: bytes | None = None) -> None:
        if self.lost:
            return
        scripts = open_store(self.services.store, address, self.config.sieve)
        self.address, self.scripts, self.state = address, scripts, AUTHENTICATED
        # After login a literal may be a whole script: up to the size limit; one over it is
        # read past and answered QUOTA/MAXSIZE.
        self.reader.literal_cap = max(scripts.max_size, self.settings.max_literal_before_auth)
        self.reader.skip_oversized = True
        log.info(
            "managesieve #{sid} login {addr} from {ip}",
            sid=self.session_id,
            addr=visible(address),
            ip=self.client_ip,
        )
        if server_final is not None:
            self._write([R.ok("Logged in.", "SASL", R.string(base64.b64encode(server_final)))])
        else:
            self._write([R.ok("Logged in.")])

    def _unauthenticate(self, args):
        if args:
            raise SieveNo("UNAUTHENTICATE takes no arguments.", bad=True)
        # RFC 5804 §2.14.1: back to the non-authenticated state; TLS stays.
        log.info(
            "managesieve #{sid} logout {addr}", sid=self.session_id, addr=visible(self.address)
        )
        self.address, self.scripts, self.state = None, None, NONAUTH
        self.reader.literal_cap = self.settings.max_literal_before_auth
        self.reader.skip_oversized = False
        self.conn.logged_out()
        self._write([R.ok("Unauthenticate completed.")])


def _text(value, what: str) -> str:
    """A string argument as text: RFC 5804 §4 strings are UTF-8."""
    if isinstance(value, Atom):
        return value.text
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SieveNo(f"The {what} is not UTF-8.", bad=True) from None
