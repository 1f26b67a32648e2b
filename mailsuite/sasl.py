"""SASL PLAIN and LOGIN as pure state machines, shared by SMTP, POP3 and IMAP.

Each protocol frames the exchange its own way (SMTP `334`, IMAP `+`, POP3 `+`), but the
mechanisms are the same: feed base64 lines in, get a challenge to send or the credentials out.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

MECHANISMS = ("PLAIN", "LOGIN")


class SaslError(Exception):
    """The client sent something the mechanism cannot accept (malformed, or cancelled)."""


class SaslCancelled(SaslError):
    """RFC 4954 §4: a line of `*` cancels the exchange."""


@dataclass(frozen=True)
class Credentials:
    authzid: str
    username: str
    password: str


@dataclass(frozen=True)
class Challenge:
    """Bytes to send to the client (before base64 encoding)."""

    data: bytes


def decode_response(line: bytes | str) -> bytes:
    """Decode one client response line; `=` is an empty initial response (RFC 4954 §4)."""
    if isinstance(line, str):
        line = line.encode("ascii", "replace")
    line = line.strip()
    if line == b"*":
        raise SaslCancelled("authentication cancelled")
    if line == b"=":
        return b""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("invalid base64") from None


def encode_challenge(data: bytes) -> bytes:
    return base64.b64encode(data)


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


def mechanism(name: str) -> SaslPlain | SaslLogin:
    """A fresh state machine for `name`; raises SaslError for mechanisms we do not offer."""
    upper = name.upper()
    if upper == "PLAIN":
        return SaslPlain()
    if upper == "LOGIN":
        return SaslLogin()
    raise SaslError(f"unsupported mechanism {name}")
