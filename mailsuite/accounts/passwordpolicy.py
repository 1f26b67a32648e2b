"""Which new passwords the admin command accepts: long enough, and not the user's own name.

Checked by `mailsuite user add` and `user passwd` alike, whether the password comes from the
prompt or from `--password-stdin`, before anything is hashed or written. Passwords carried
over from another server (`import users`) arrive as hashes and are not checked.
"""

from __future__ import annotations

from mailsuite.accounts.errors import AccountError

# A local part shorter than this may well occur inside a good password by chance ("al").
_NAME_MIN_LENGTH = 3


class WeakPassword(AccountError):
    """A password the policy refuses (exit status EX_DATAERR)."""


def check_password(password: str, address: str, min_length: int) -> None:
    """Raise WeakPassword saying what is wrong with `password` for the account `address`."""
    if not password:
        raise WeakPassword("empty password")
    if len(password) < min_length:
        raise WeakPassword(
            f"the password is too short: {len(password)} characters, at least {min_length} "
            "needed ([accounts] min_password_length)"
        )
    local = address.rpartition("@")[0].lower()
    lowered = password.lower()
    names = {local, local.split("+", 1)[0]}
    for name in names:
        if name and (lowered == name or (len(name) >= _NAME_MIN_LENGTH and name in lowered)):
            raise WeakPassword("the password may not be or contain the user's name")
