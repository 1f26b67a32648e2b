"""Password hashing: one passlib CryptContext, argon2 by default.

Hashes carried over from Dovecot keep their `{SCHEME}` prefix in the database; they are verified
through the matching passlib scheme and replaced by an argon2 hash after the next good login.
"""

from __future__ import annotations

from passlib.context import CryptContext

CONTEXT = CryptContext(
    schemes=["argon2", "bcrypt", "sha512_crypt", "sha256_crypt"],
    default="argon2",
    deprecated=["bcrypt", "sha512_crypt", "sha256_crypt"],
)

# Dovecot scheme prefixes whose hash body is a standard crypt string passlib understands.
_DOVECOT_PREFIXES = {
    "{SHA512-CRYPT}": "sha512_crypt",
    "{SHA256-CRYPT}": "sha256_crypt",
    "{BLF-CRYPT}": "bcrypt",
    "{ARGON2ID}": "argon2",
    "{ARGON2I}": "argon2",
    "{CRYPT}": None,
}


def hash_password(password: str) -> str:
    return CONTEXT.hash(password)


def _strip_prefix(stored: str) -> str:
    if stored.startswith("{"):
        prefix, sep, rest = stored.partition("}")
        if sep and (prefix + "}").upper() in _DOVECOT_PREFIXES:
            return rest
    return stored


def verify_password(password: str, stored: str) -> tuple[bool, str | None]:
    """(matches, replacement hash or None).  Slow on purpose: call it off the reactor."""
    had_prefix = stored.startswith("{")
    body = _strip_prefix(stored)
    try:
        ok, new_hash = CONTEXT.verify_and_update(password, body)
    except (ValueError, TypeError):
        return False, None
    if ok and new_hash is None and had_prefix:
        new_hash = CONTEXT.hash(password)
    return ok, new_hash if ok else None
