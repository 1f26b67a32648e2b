"""The user's script store as ManageSieve reaches it (`mailsuite.sieve.scripts`), and the
exceptions its commands turn into response codes.  The store's methods and `check_script`
block: the session calls them in the durable-I/O service's threads."""

from __future__ import annotations

from mailsuite.config import SieveConfig
from mailsuite.sieve import SieveError, parse
from mailsuite.sieve.scripts import (
    ActiveScriptError,
    BadNameError,
    QuotaError,
    ScriptStore,
    account_folder,
    check_name,
)

# RENAMESCRIPT to a name in use (RFC 5804 §2.11.1 ALREADYEXISTS).
ScriptExists = FileExistsError

__all__ = [
    "ActiveScriptError",
    "BadNameError",
    "QuotaError",
    "ScriptExists",
    "SieveError",
    "check_name",
    "check_script",
    "open_store",
]


def open_store(store, address: str, settings: SieveConfig) -> ScriptStore:
    """The ScriptStore of `address` in the mail `store` with the `[sieve]` limits, writing
    through the store's durable-I/O service.  Touches no file: its methods do."""
    return ScriptStore(
        account_folder(store.path_for(address)),
        max_scripts=settings.max_scripts,
        max_size=settings.max_script_size,
        global_folder=settings.global_dir,
        io=store.io,
    )


def check_script(text: str) -> None:
    """CHECKSCRIPT (RFC 5804 §2.12): the checks of PUTSCRIPT without storing; SieveError."""
    parse(text)
