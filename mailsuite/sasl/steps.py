"""What a mechanism and the dialogue hand each other: a challenge, credentials, an error."""

from __future__ import annotations

from dataclasses import dataclass


class SaslError(Exception):
    """The client sent something the mechanism cannot accept."""


@dataclass(frozen=True)
class Credentials:
    authzid: str
    username: str
    password: str


@dataclass(frozen=True)
class Challenge:
    """Bytes to send to the client (before base64 encoding)."""

    data: bytes
