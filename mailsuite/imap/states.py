"""The IMAP session states (RFC 3501 §3) and the sets of them a command may run in."""

from __future__ import annotations

NOT_AUTHENTICATED = "not authenticated"
AUTHENTICATED = "authenticated"
SELECTED = "selected"
LOGOUT = "logout"

# RFC 3501 §6.1-§6.4: commands valid in any state, before login, once logged in, and only
# with a mailbox selected.
ANY = frozenset({NOT_AUTHENTICATED, AUTHENTICATED, SELECTED})
NOAUTH = frozenset({NOT_AUTHENTICATED})
AUTH = frozenset({AUTHENTICATED, SELECTED})
SEL = frozenset({SELECTED})
