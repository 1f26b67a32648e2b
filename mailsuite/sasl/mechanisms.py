"""The mechanisms we offer: PLAIN and LOGIN as pure state machines (decoded responses in, a
challenge or the credentials out) and SCRAM-SHA-256 (`scram.py`).  The framing around them
(base64, `*`, initial responses) is `dialogue.py`."""

from __future__ import annotations

from mailsuite.sasl.scram import ScramSha256
from mailsuite.sasl.steps import Challenge, Credentials, SaslError

# The order of EHLO AUTH, CAPA SASL and the IMAP AUTH= capabilities.
MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")

__all__ = ["MECHANISMS", "Challenge", "Credentials", "SaslError", "mechanism"]


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError("credentials are not UTF-8") from None


class SaslPlain:
    """RFC 4616: one message `authzid NUL authcid NUL passwd`."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | Credentials:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SaslError("malformed PLAIN response")
        authzid, user, password = (_text(p) for p in parts)
        return Credentials(authzid, user, password)


class SaslLogin:
    """The de-facto LOGIN mechanism: username, then password, each a separate response.

    Outlook sends the username as an initial response (`AUTH LOGIN <base64>`).
    """

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: str | None = None

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is None:
            return Challenge(b"Username:")
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | Credentials:
        if self._username is None:
            self._username = _text(response)
            if not self._username:
                raise SaslError("empty username")
            return Challenge(b"Password:")
        return Credentials("", self._username, _text(response))


def mechanism(name: str) -> SaslPlain | SaslLogin | ScramSha256:
    """A fresh state machine for `name`; raises SaslError for mechanisms we do not offer."""
    upper = name.upper()
    if upper == ScramSha256.name:
        return ScramSha256()
    if upper == "PLAIN":
        return SaslPlain()
    if upper == "LOGIN":
        return SaslLogin()
    raise SaslError(f"unsupported mechanism {name}")
