"""The capability list (RFC 5804 §1.7), sent as the greeting, after STARTTLS and on CAPABILITY.

Pure: what the session knows (mechanisms it may offer now, whether STARTTLS is possible, who
is logged in) in, (name, value) pairs out.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailsuite import sieve

IMPLEMENTATION = "mailsuite"
# RFC 5804 §1.7: VERSION "1.0" promises the commands this document added (CHECKSCRIPT,
# RENAMESCRIPT, NOOP) and the response codes.
VERSION = "1.0"


def capability_pairs(
    *, mechanisms: Sequence[str], starttls: bool, owner: str | None, max_redirects: int
) -> list[tuple[str, str | None]]:
    """The capability lines in order.  SASL may be empty only while STARTTLS is offered
    (RFC 5804 §1.7): a client then knows to start TLS before it authenticates."""
    pairs: list[tuple[str, str | None]] = [
        ("IMPLEMENTATION", IMPLEMENTATION),
        ("SASL", " ".join(mechanisms)),
        ("SIEVE", " ".join(sieve.EXTENSIONS)),
    ]
    # RFC 5804 §1.7: the redirects one run may make ([sieve] max_redirects).  No NOTIFY:
    # the enotify extension is not offered.
    pairs.append(("MAXREDIRECTS", str(max_redirects)))
    if starttls:
        pairs.append(("STARTTLS", None))
    if owner is not None:
        # RFC 5804 §1.7: OWNER, the logged-in user, only after authentication.
        pairs.append(("OWNER", owner))
    pairs.append(("UNAUTHENTICATE", None))
    pairs.append(("VERSION", VERSION))
    return pairs
