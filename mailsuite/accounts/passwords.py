"""Password hashing: one passlib CryptContext, argon2 by default.

Hashes carried over from Dovecot keep their `{SCHEME}` prefix in the database; they are verified
through the matching passlib scheme and replaced by an argon2 hash after the next good login.
"""

from __future__ import annotations

from passlib.context import CryptContext

# argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane): passlib's default of
# 64 MiB per verification is never given back to the OS and multiplies with concurrent logins,
# which matters when hundreds of phones reconnect at once.
CONTEXT = CryptContext(
    schemes=["argon2", "bcrypt", "sha512_crypt", "sha256_crypt"],
    default="argon2",
    deprecated=["bcrypt", "sha512_crypt", "sha256_crypt"],
    argon2__type="ID",
    argon2__memory_cost=19456,
    argon2__time_cost=2,
    argon2__parallelism=1,
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
