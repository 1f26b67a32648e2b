"""The IMAP command table: which handler runs a command, and in which session states.

Each module of this package registers its commands with `@command(...)`.  A handler is
``handler(session, cmd) -> None | str | Deferred``: it writes untagged responses through
`session.send(...)` and either returns (tagged OK with a default text), returns the OK text
(optionally with a response code as ``("CODE", "text")``), or raises `ImapBad` / `ImapNo`.
The session turns all of those into the tagged reply in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

NOT_AUTHENTICATED = "not authenticated"
AUTHENTICATED = "authenticated"
SELECTED = "selected"
LOGOUT = "logout"

ANY = frozenset({NOT_AUTHENTICATED, AUTHENTICATED, SELECTED})
AUTH = frozenset({AUTHENTICATED, SELECTED})
SEL = frozenset({SELECTED})
NOAUTH = frozenset({NOT_AUTHENTICATED})


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Callable
    states: frozenset
    # RFC 3501 §7.4.1: no EXPUNGE responses while answering FETCH, STORE or SEARCH
    # (the UID forms may carry them: sequence numbers are not used there).
    expunge_ok: bool = True


COMMANDS: dict[str, CommandSpec] = {}

# Returned by handlers that wrote their own tagged reply (STARTTLS, COMPRESS: the stream
# changes right after it).
ALREADY_ANSWERED = object()


def command(*names: str, states: frozenset = AUTH, expunge_ok: bool = True):
    def register(fn: Callable) -> Callable:
        for name in names:
            COMMANDS[name] = CommandSpec(name, fn, states, expunge_ok)
        return fn

    return register


def load_all() -> dict[str, CommandSpec]:
    """Import every command module (registration is a side effect of the import)."""
    from mailsuite.imap.commands import (  # noqa: F401
        append,
        auth,
        copy,
        expunge,
        fetch,
        idle,
        mailbox,
        misc,
        search,
        select,
        store,
    )

    return COMMANDS
