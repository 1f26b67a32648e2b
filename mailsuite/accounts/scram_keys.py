"""The SCRAM-SHA-256 keys of a password (RFC 5802 §3, RFC 7677), computed when the password is
set and stored instead of anything the password could be recovered from directly.

The stored form is PostgreSQL's: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
(base64), one column of the users table.  A server holding only these keys can check a client's
proof and prove itself, but a thief of the database still has to guess the password through
PBKDF2 (slower to guess than nothing, faster than argon2: hence a count well above RFC 7677's
minimum; the client pays it once per login, the server only when the password is set).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

from mailsuite.accounts.saslprep import SaslprepError, saslprep

MECHANISM = "SCRAM-SHA-256"
# RFC 7677 §4: at least 4096.
ITERATIONS = 10_000
SALT_BYTES = 16


@dataclass(frozen=True)
class ScramKeys:
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def encode(self) -> str:
        """The stored form (above)."""
        b64 = base64.b64encode
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )

    @classmethod
    def decode(cls, stored: str | None) -> ScramKeys | None:
        """The keys from their stored form; None if absent or malformed."""
        if not stored:
            return None
        try:
            name, params, keys = stored.split("$")
            iterations, salt = params.split(":")
            stored_key, server_key = keys.split(":")
            result = cls(
                base64.b64decode(salt, validate=True),
                int(iterations),
                base64.b64decode(stored_key, validate=True),
                base64.b64decode(server_key, validate=True),
            )
        except (ValueError, binascii.Error):
            return None
        if name != MECHANISM or result.iterations < 1 or len(result.stored_key) != 32:
            return None
        return result


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), Hi being PBKDF2 with
    HMAC as the PRF and one block of output (RFC 5802 §2.2).  Raises SaslprepError."""
    return hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)


def client_key(salted: bytes) -> bytes:
    return hmac.new(salted, b"Client Key", hashlib.sha256).digest()


def derive_keys(
    password: str, salt: bytes | None = None, iterations: int = ITERATIONS
) -> ScramKeys | None:
    """The keys of `password` under a fresh salt; None for a password SASLprep refuses (that
    account then offers no SCRAM, RFC 5802 §5.1: the client could not compute them either)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    try:
        salted = salted_password(password, salt, iterations)
    except SaslprepError:
        return None
    if not salted:
        return None
    stored_key = hashlib.sha256(client_key(salted)).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return ScramKeys(salt, iterations, stored_key, server_key)


def unknown_user_keys(secret: bytes, username: str) -> ScramKeys:
    """Keys for a user who has none (unknown, disabled, or a hash carried over from another
    server): the same salt for the same name every time, so the server-first message does not
    tell which users exist, and keys no proof matches."""
    salt = hmac.new(secret, username.lower().encode("utf-8"), hashlib.sha256).digest()
    return ScramKeys(salt[:SALT_BYTES], ITERATIONS, os.urandom(32), os.urandom(32))
