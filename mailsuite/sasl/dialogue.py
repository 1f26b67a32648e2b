"""One SASL exchange (RFC 4422) as SMTP, POP3 and IMAP all run it, without the wire.

The protocol feeds events in: the mechanism name with its optional initial response (RFC 4954
§4, RFC 5034 §4, RFC 4959 §3), then each client line while a challenge is out.  It gets an
outcome back and maps it to its own reply: a challenge to send (SMTP `334`, POP3 and IMAP `+`),
a cancellation, a malformed response, a refusal, or credentials ready for the Authenticator.
The codes, enhanced codes and response codes stay with each protocol.

SCRAM-SHA-256 needs the server in the middle of the exchange: after the client-first message the
user's keys are looked up (the throttle counting the attempt first, as for a password), so that
step's outcome is `Pending`; and it checks the client's proof itself, so its `Ready` carries a
`Verdict` that `login` only reports.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.accounts.checker import Authenticator, AuthFailed, AuthThrottled, ScramAttempt
from mailsuite.sasl.mechanisms import SaslLogin, SaslPlain, mechanism
from mailsuite.sasl.scram import KeysNeeded, ScramDone, ScramSha256
from mailsuite.sasl.steps import Challenge, Credentials, SaslError

Mechanism = SaslPlain | SaslLogin | ScramSha256


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
class Verdict:
    """The outcome of a mechanism that checked the client itself (SCRAM): the user's address,
    or None when the proof was wrong (or the user unknown), or throttled (seconds to wait)."""

    username: str
    address: str | None
    throttled: float = 0.0


@dataclass(frozen=True)
class Ready:
    """The exchange is complete: `SaslDialogue.login` gives the result (it checks a password,
    or reports a Verdict)."""

    credentials: Credentials | Verdict


@dataclass(frozen=True)
class Pending:
    """The server is looking something up (SCRAM's keys): `deferred` fires with the next
    outcome (a refusal by the throttle included); it fails only on an internal error, such as
    the database being unreadable.  Hold the client's input until then."""

    deferred: defer.Deferred


Outcome = (
    SendChallenge
    | Cancelled
    | BadEncoding
    | BadResponse
    | UnknownMechanism
    | EncryptionRequired
    | IdentityRefused
    | Ready
    | Pending
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
        self._mechanism: Mechanism | None = None
        self._mechanism_name = ""  # the mechanism started, for the login metrics
        self._attempt: ScramAttempt | None = None  # SCRAM, from the key lookup to the verdict
        self._address: str | None = None  # SCRAM: the proof was right
        self._ended = False

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
        self._mechanism_name = mech.name
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
            self._fail_attempt()
            return decoded
        return self._advance(mech, lambda: mech.step(decoded))

    def abort(self) -> None:
        """The protocol ended the exchange itself (a line too long, the connection gone)."""
        self._mechanism = None
        self._ended = True
        self._fail_attempt()

    def _fail_attempt(self) -> None:
        """An exchange that ends without a right proof counts as a failure (the throttle has
        counted it already)."""
        if self._attempt is not None:
            self._attempt.finish(False)

    def _advance(self, mech: Mechanism, step: Callable[[], object]) -> Outcome:
        try:
            result = step()
        except SaslError as e:
            if self._attempt is not None:
                # After the key lookup every failure is a failed login (RFC 5802 §7 reason).
                self._attempt.finish(False)
                return Ready(Verdict(self._attempt.username, None))
            return BadResponse(str(e))
        if isinstance(result, Credentials):
            if result.authzid and result.authzid.lower() != result.username.lower():
                return IdentityRefused()
            return Ready(result)
        if isinstance(result, KeysNeeded) and isinstance(mech, ScramSha256):
            if mech.authzid and mech.authzid.lower() != result.username.lower():
                return IdentityRefused()
            return Pending(self._scram_keys(mech, result.username))
        if isinstance(result, ScramDone):
            return Ready(Verdict(result.username, self._address))
        if not isinstance(result, Challenge):
            raise TypeError(f"unexpected mechanism step {result!r}")
        if isinstance(mech, ScramSha256) and mech.verified and self._attempt is not None:
            # The proof matched: the verdict is in before the server-final message goes out.
            self._address = self._attempt.finish(True)
            if self._address is None:
                return Ready(Verdict(mech.username, None))
        self._mechanism = mech
        return SendChallenge(result.data)

    def _scram_keys(self, mech: ScramSha256, username: str) -> defer.Deferred:
        """Deferred[Outcome]: the server-first challenge once the keys are in."""
        d = self._authenticator.scram_keys(username, self._client_ip, self._protocol)

        def found(attempt: ScramAttempt) -> Outcome:
            self._attempt = attempt
            if self._ended:
                attempt.finish(False)
                return Cancelled()
            # RFC 5802 §5.1: the server's part of the nonce, fresh for each exchange.
            nonce = base64.b64encode(os.urandom(18)).decode("ascii")
            return self._advance(mech, lambda: mech.server_first(attempt.keys, nonce))

        def throttled(failure) -> Outcome:
            failure.trap(AuthThrottled)
            return Ready(Verdict(username, None, throttled=failure.value.retry_after))

        return d.addCallbacks(found, throttled)

    def login(self, credentials: Credentials | Verdict) -> defer.Deferred:
        """Deferred[str] (the user's address); errbacks with AuthFailed or AuthThrottled."""
        if isinstance(credentials, Verdict):
            if credentials.throttled:
                return defer.fail(AuthThrottled(credentials.throttled))
            if credentials.address is None:
                return defer.fail(AuthFailed("authentication failed"))
            return defer.succeed(credentials.address)
        return self._authenticator.login(
            credentials.username,
            credentials.password,
            self._client_ip,
            self._protocol,
            self._mechanism_name,
        )
