"""A checked Sieve script, with the scripts it includes resolved when a resolver was given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mailsuite.sieve.commands import Checker
from mailsuite.sieve.grammar import Command, SieveError, parse_tree

# Includes: at most this many distinct scripts and this deep (RFC 6609 §3.2 leaves the limits
# to the implementation; loops are errors).
MAX_INCLUDED = 32
MAX_INCLUDE_DEPTH = 8

Resolver = Callable[[str, str], "str | None"]


@dataclass
class Script:
    commands: list[Command]
    required: frozenset[str]
    # (location, name) -> the included Script, or None when the resolver had no such script;
    # empty when parsed without a resolver (upload-time checks).
    included: dict[tuple[str, str], Script | None] = field(default_factory=dict)
    name: str = ""


def parse(text: str, *, includes: Resolver | None = None) -> Script:
    """Check a script (RFC 5228 §8.2, the extensions' own rules): SieveError with the line.
    With `includes` (location "personal" or "global", name) -> text or None, the scripts it
    includes are parsed too, and a loop among them is an error."""
    return _parse(text, includes, {}, (), "")


def _parse(text, includes, seen: dict, chain: tuple, name: str) -> Script:
    try:
        tree = parse_tree(text)
    except RecursionError:
        raise SieveError(1, "script too deeply nested") from None
    checker = Checker()
    checker.script(tree)
    script = Script(tree, frozenset(checker.required), name=name)
    if includes is None:
        return script
    for node in checker.includes:
        location = "global" if node.tags.get("global") else "personal"
        target = node.positional[0].text
        key = (location, target)
        if key in chain:
            raise SieveError(node.line, f"include loop through '{target}'")
        if key in seen:
            script.included[key] = seen[key]
            continue
        if len(chain) >= MAX_INCLUDE_DEPTH or len(seen) >= MAX_INCLUDED:
            raise SieveError(node.line, "too many included scripts")
        source = includes(location, target)
        if source is None:
            seen[key] = script.included[key] = None
            continue
        try:
            child = _parse(source, includes, seen, chain + (key,), target)
        except SieveError as e:
            raise SieveError(node.line, f"in included script '{target}': {e}") from None
        seen[key] = script.included[key] = child
    return script
