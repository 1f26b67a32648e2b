"""What the account database refuses, each carrying the exit status the admin command gives it."""

from __future__ import annotations

from mailsuite.sysexits import EX_CANTCREAT, EX_DATAERR, EX_NOUSER


class AccountError(ValueError):
    """A request the account database refuses (duplicate, unknown, malformed)."""

    def __init__(self, message: str, code: int = EX_DATAERR):
        super().__init__(message)
        self.code = code


class NoSuchAccount(AccountError):
    """The user, alias or domain named does not exist."""

    def __init__(self, message: str):
        super().__init__(message, EX_NOUSER)


class AccountExists(AccountError):
    """The user or domain to create exists already."""

    def __init__(self, message: str):
        super().__init__(message, EX_CANTCREAT)
