"""The folders a parsed Sieve script can file mail into, read from its text without running it:
what IMAP NOTIFY's `inboxes` covers besides INBOX (RFC 5465 §6, mailboxes an MDA delivers to).

Every `fileinto` counts, whichever branch it sits in (a message may take any of them), in the
script and in the scripts it includes.  A name built from variables (RFC 5229) is known only
when a message runs through the script, so it is left out.
"""

from __future__ import annotations

from collections.abc import Iterator

from mailsuite.sieve.grammar import Command
from mailsuite.sieve.script import Script

__all__ = ["fileinto_folders"]


def fileinto_folders(script: Script | None) -> frozenset[str]:
    """The folder names the `fileinto` commands of `script` (and its includes) name."""
    found: set[str] = set()
    seen: set[int] = set()
    pending = [script] if script is not None else []
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        expands = "variables" in current.required
        for cmd in _commands(current.commands):
            if cmd.name != "fileinto" or not cmd.positional:
                continue
            name = cmd.positional[0].text
            if not name or (expands and "${" in name):
                continue
            # The interpreter files "inbox" in any case into INBOX (RFC 3501 §5.1).
            found.add("INBOX" if name.upper() == "INBOX" else name)
        pending.extend(s for s in current.included.values() if s is not None)
    return frozenset(found)


def _commands(commands: list[Command]) -> Iterator[Command]:
    """Every command, those in blocks included (depth is bounded by the parser)."""
    for cmd in commands:
        yield cmd
        if cmd.block:
            yield from _commands(cmd.block)
