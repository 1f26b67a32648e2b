"""One SASL exchange (RFC 4422) as SMTP, POP3 and IMAP all run it, without the wire.

The protocol feeds events in: the mechanism name with its optional initial response (RFC 4954
§4, RFC 5034 §4, RFC 4959 §3), then each client line while a challenge is out.  It gets an
outcome back and maps it to its own reply: a challenge to send (SMTP `334`, POP3 and IMAP `+`),
a cancellation, a malformed response, a refusal, or credentials ready for the Authenticator.
The codes, enhanced codes and response codes stay with each protocol.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.accounts.checker import Authenticator
from mailsuite.sasl.mechanisms import (
    Challenge,
    Credentials,
    SaslError,
    SaslLogin,
    SaslPlain,
    mechanism,
)


@dataclass(frozen=True)
class SendChallenge:
    """Send this challenge and wait for the next client line."""

    data: bytes

    @property
    def encoded(self) -> bytes:
        return base64.b64encode(self.data)


@dataclass(frozen=True)
class Cancelled:
    """The client sent `*` (RFC 4954 §4, RFC 5034 §4, RFC 3501 §6.2.2): the exchange is over."""


@dataclass(frozen=True)
class BadEncoding:
    """The response (or initial response) is not base64: the exchange is over."""


@dataclass(frozen=True)
class BadResponse:
    """The mechanism refused the decoded response (malformed, not UTF-8): the exchange is over."""

    reason: str


@dataclass(frozen=True)
class UnknownMechanism:
    """A mechanism we do not offer."""

    name: str


@dataclass(frozen=True)
class EncryptionRequired:
    """Our mechanisms send the password itself: not over a clear connection unless the
    configuration allows it (RFC 4954 §4, RFC 8314)."""


@dataclass(frozen=True)
class IdentityRefused:
    """An authorization identity other than the user's own: we offer no proxy authorization
    (RFC 4616 §2)."""


@dataclass(frozen=True)
class Ready:
    """Credentials complete: authenticate them (`SaslDialogue.login`)."""

    credentials: Credentials


Outcome = (
    SendChallenge
    | Cancelled
    | BadEncoding
    | BadResponse
    | UnknownMechanism
    | EncryptionRequired
    | IdentityRefused
    | Ready
)


def decode_response(line: bytes | str) -> bytes | Cancelled | BadEncoding:
    """One client response line: `*` cancels, `=` is an empty initial response (RFC 4954 §4),
    an empty line empty data; anything else must be strict base64."""
    if isinstance(line, str):
        line = line.encode("ascii", "replace")
    line = line.strip()
    if line == b"*":
        return Cancelled()
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return BadEncoding()


class SaslDialogue:
    """One AUTH/AUTHENTICATE exchange: `start`, then `respond` to each line while `waiting`.

    Every outcome other than SendChallenge ends the exchange.  `login` hands Ready credentials
    to the shared Authenticator, which counts failures in the throttle before checking the
    password and runs the check in the thread pool.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        client_ip: str,
        protocol: str,
        *,
        plaintext_allowed: bool = True,
    ) -> None:
        self._authenticator = authenticator
        self._client_ip = client_ip
        self._protocol = protocol
        self._plaintext_allowed = plaintext_allowed
        self._mechanism: SaslPlain | SaslLogin | None = None

    @property
    def waiting(self) -> bool:
        """A challenge is out: the next client line is a response, not a command."""
        return self._mechanism is not None

    def start(self, name: str, initial: bytes | str | None = None) -> Outcome:
        """The mechanism name and the initial response, if the client sent one."""
        try:
            mech = mechanism(name)
        except SaslError:
            return UnknownMechanism(name)
        if not self._plaintext_allowed:
            return EncryptionRequired()
        decoded = None
        if initial is not None:
            decoded = decode_response(initial)
            if not isinstance(decoded, bytes):
                return decoded
        return self._advance(mech, lambda: mech.start(decoded))

    def respond(self, line: bytes) -> Outcome:
        """The client's line after a challenge."""
        mech, self._mechanism = self._mechanism, None
        if mech is None:
            raise RuntimeError("no SASL challenge is outstanding")
        decoded = decode_response(line)
        if not isinstance(decoded, bytes):
            return decoded
        return self._advance(mech, lambda: mech.step(decoded))

    def abort(self) -> None:
        """The protocol ended the exchange itself (a line too long, the connection gone)."""
        self._mechanism = None

    def _advance(
        self, mech: SaslPlain | SaslLogin, step: Callable[[], Challenge | Credentials]
    ) -> Outcome:
        try:
            result = step()
        except SaslError as e:
            return BadResponse(str(e))
        if not isinstance(result, Credentials):
            self._mechanism = mech
            return SendChallenge(result.data)
        if result.authzid and result.authzid.lower() != result.username.lower():
            return IdentityRefused()
        return Ready(result)

    def login(self, credentials: Credentials) -> defer.Deferred:
        """Deferred[str] (the user's address); errbacks with AuthFailed or AuthThrottled."""
        return self._authenticator.login(
            credentials.username, credentials.password, self._client_ip, self._protocol
        )
