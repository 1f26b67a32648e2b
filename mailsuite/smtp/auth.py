"""SMTP AUTH (RFC 4954): the SMTP wire form of the shared SASL dialogue (`mailsuite.sasl`).

A mixin of `SmtpSession`: it uses the session's state (`helo`, `user`, `tx`, `mode`) and its
`conn`, `_wait` and `_auth_allowed`.
"""

from __future__ import annotations

from mailsuite import sasl
from mailsuite.accounts.checker import AuthThrottled
from mailsuite.smtp.parser import SmtpReply, parse_auth


def _failed() -> SmtpReply:
    return SmtpReply(535, "5.7.8", "Error: authentication failed")


def _encryption_required() -> SmtpReply:
    # RFC 4954 §4: no password over a clear connection.
    return SmtpReply(538, "5.7.11", "Encryption required for requested authentication mechanism")


class AuthCommands:
    """AUTH and its continuation lines, for `SmtpSession`."""

    def smtp_AUTH(self, arg: str) -> None:
        if self.helo is None or not self.esmtp:
            raise SmtpReply(503, "5.5.1", "Error: send EHLO first")
        if self.user is not None:
            raise SmtpReply(503, "5.5.1", "Error: already authenticated")
        if self.tx is not None:
            raise SmtpReply(503, "5.5.1", "Error: MAIL transaction in progress")
        # Refused before the arguments are even parsed: the same answer whatever was asked.
        allowed = self._auth_allowed()
        if not allowed:
            raise _encryption_required()
        name, initial = parse_auth(arg)
        self.sasl = sasl.SaslDialogue(
            self.services.authenticator, self.client_ip, "smtp", plaintext_allowed=allowed
        )
        self._sasl_outcome(self.sasl.start(name, initial))

    def _auth_response(self, line: bytes) -> None:
        self.mode = "command"
        self._sasl_outcome(self.sasl.respond(line))

    def _sasl_outcome(self, outcome: sasl.Outcome) -> None:
        """One dialogue outcome on the wire: `334` challenge, an error reply, or the login."""
        if isinstance(outcome, sasl.SendChallenge):
            self.mode = "auth"
            # RFC 4954 §4: "334" SP base64 challenge, no enhanced code.
            self.conn.write(b"334 " + outcome.encoded + b"\r\n")
            return
        if isinstance(outcome, sasl.Pending):
            # SCRAM's key lookup: the input waits; the next outcome is usually the challenge.
            self._wait(outcome.deferred.addCallback(self._sasl_resumed))
            return
        dialogue, self.sasl = self.sasl, None
        if isinstance(outcome, sasl.Ready):
            self._login(dialogue, outcome.credentials)
        elif isinstance(outcome, sasl.UnknownMechanism):
            raise SmtpReply(504, "5.5.4", "Unrecognized authentication type")
        elif isinstance(outcome, sasl.EncryptionRequired):
            raise _encryption_required()
        elif isinstance(outcome, sasl.Cancelled):
            # RFC 4954 §4: "*" cancels with 501.
            raise SmtpReply(501, "5.0.0", "Authentication aborted")
        elif isinstance(outcome, sasl.BadEncoding):
            raise SmtpReply(501, "5.5.2", "Cannot decode response")
        else:  # BadResponse, IdentityRefused
            raise _failed()

    def _sasl_resumed(self, outcome: sasl.Outcome) -> None:
        if self.mode == "closed" or self.sasl is None:
            return  # connection_lost aborted the dialogue
        self._sasl_outcome(outcome)

    def _login(self, dialogue: sasl.SaslDialogue, creds: sasl.Credentials) -> None:
        d = dialogue.login(creds)

        def ok(address):
            self.user = address
            self._reply(235, "2.7.0", "Authentication successful")

        def failed(failure):
            if failure.check(AuthThrottled):
                raise SmtpReply(454, "4.7.0", "Temporary authentication failure, try again later")
            raise _failed()

        self._wait(d.addCallbacks(ok, failed))
