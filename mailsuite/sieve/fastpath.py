"""Compiled forms of the tests most scripts are made of: header, address, envelope and exists
with constant arguments, :is, :contains or :matches, the default or octet comparator; size,
true, false, and allof/anyof/not over those.

A filter of fifty rules runs on every delivery, so these skip the general path (variable
expansion, match-type dispatch, match variables) and compare folded strings directly.  Each is
built once per compiled script and kept on its test node; tests outside this set (or with
variables) return None and take the general path.  The steps charged are the general path's.
"""

from __future__ import annotations

from collections.abc import Callable

from mailsuite.sieve.grammar import Test
from mailsuite.sieve.matching import MAX_MATCH_TEXT, MatchSpec, match
from mailsuite.sieve.message_view import SUBADDRESS_SEPARATOR

_SIMPLE_COMPARATORS = ("i;ascii-casemap", "i;octet")
_ADDRESS_PARTS = ("all", "localpart", "domain", "user", "detail")

# fn(machine) -> bool; the machine offers .view, .step(line, cost), .limits and .matches
Compiled = Callable[[object], bool]


def compiled(test: Test) -> Compiled | None:
    found = test.__dict__.get("_compiled", False)
    if found is False:
        found = test.__dict__["_compiled"] = _build(test)
    return found


def _constant(values) -> list[str] | None:
    if values is None:
        return None
    texts = [v.text for v in values]
    return None if any("${" in t for t in texts) else texts


def _build(test: Test) -> Compiled | None:
    name, tags = test.name, test.tags
    if name == "true":
        return lambda m: True
    if name == "false":
        return lambda m: False
    if name == "size":
        limit = test.positional[0]
        if "over" in tags:
            return lambda m: m.view.size > limit
        return lambda m: m.view.size < limit
    if name in ("allof", "anyof", "not"):
        return _combined(test)
    if name not in ("header", "address", "envelope", "exists"):
        return None
    names = _constant(test.positional[0])
    if names is None:
        return None
    if name == "exists":
        return lambda m: all(m.view.exists(n) for n in names)
    keys = _constant(test.positional[1])
    if keys is None or "index" in tags or "last" in tags:
        return None
    if any(k in tags for k in ("regex", "value", "count")):
        return None
    comparator = tags["comparator"].text if "comparator" in tags else "i;ascii-casemap"
    if comparator not in _SIMPLE_COMPARATORS:
        return None
    line = test.line
    matches = "matches" in tags
    if matches:
        judge = _wildcards(keys, comparator, line)
    else:
        judge = _plain(keys, comparator, "contains" in tags, line)
    # :is and :contains compare folded values: folded once per message and kept in the
    # view's memo under this test's key, for the other tests that look at the same thing.
    fold = _same if matches or comparator == "i;octet" else _lower
    if name == "header":
        lnames = tuple(n.lower() for n in names)
        key = ("header", lnames, fold)

        def header(m) -> bool:
            memo = m.view.memo
            values = memo.get(key)
            if values is None:
                values = memo[key] = [fold(v) for n in lnames for v in m.view.values(n)]
            if not values:
                return False
            return judge(m, values)

        return header
    part = next((p for p in _ADDRESS_PARTS if p in tags), "all")
    if name == "address":
        lnames = tuple(n.lower() for n in names)
        take = _PART_FUNCTIONS[part]
        key = ("address", lnames, part, fold)

        def address(m) -> bool:
            memo = m.view.memo
            values = memo.get(key)
            if values is None:
                view = m.view
                values = [fold(v) for n in lnames for v in view.address_parts(n, take)]
                memo[key] = values
            if not values:
                return False
            return judge(m, values)

        return address
    parts = tuple(n.lower() for n in names)
    if any(p not in ("from", "to") for p in parts):
        return None
    key = ("envelope", parts, part, fold)

    def envelope(m) -> bool:
        memo = m.view.memo
        values = memo.get(key)
        if values is None:
            message = m.view.input
            values = []
            for p in parts:
                v = address_part(message.mail_from if p == "from" else message.recipient, part)
                if v is not None:
                    values.append(fold(v))
            memo[key] = values
        return judge(m, values)

    return envelope


def _plain(keys: list[str], comparator: str, contains: bool, line: int):
    """judge(machine, folded values) for :is and :contains: one step per comparison, as the
    general path charges."""
    fold = _lower if comparator == "i;ascii-casemap" else _same
    folded = tuple(fold(k) for k in keys)
    wanted = frozenset(folded)
    n_keys = max(len(keys), 1)

    def judge(m, values: list[str]) -> bool:
        m.step(line, len(values) * n_keys)
        # Plain loops: cheaper than generators for the one or two values a header has.
        if contains:
            for v in values:
                for k in folded:
                    if k in v:
                        return True
            return False
        for v in values:
            if v in wanted:
                return True
        return False

    return judge


def _wildcards(keys: list[str], comparator: str, line: int):
    """judge(machine, values) for :matches: the general path's match and its cost (one step
    per comparison and one per 128 of text times pattern length), and on success the match
    variables of RFC 5229 §3.2."""
    spec = MatchSpec("matches", comparator)
    longest = max((len(k) for k in keys), default=0)
    n_keys = max(len(keys), 1)

    def judge(m, values: list[str]) -> bool:
        text = 0
        for v in values:
            text += min(len(v), MAX_MATCH_TEXT)
        m.step(line, len(values) * n_keys + text * longest // 128)
        ok, groups = match(spec, values, keys)
        if ok and groups is not None:
            limit = m.limits.max_variable_size
            m.matches = [g[:limit] for g in groups[:10]]
        return ok

    return judge


def _combined(test: Test) -> Compiled | None:
    """allof, anyof and not over compiled tests; each inner test costs its step."""
    inner = [compiled(t) for t in test.tests]
    if any(f is None for f in inner):
        return None
    if test.name == "not":
        (f,) = inner

        def negated(m) -> bool:
            m.step(test.line, 1)
            return not f(m)

        return negated
    want = test.name == "anyof"

    def combined(m) -> bool:
        for f in inner:
            m.step(test.line, 1)
            if f(m) == want:
                return want
        return not want

    return combined


def address_part(address: str, which: str) -> str | None:
    """RFC 5228 §2.7.4 and RFC 5233 §4: the part of an address a test looks at."""
    if which == "all":
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if which == "localpart":
        return local
    if which == "domain":
        return domain
    user, sep, detail = local.partition(SUBADDRESS_SEPARATOR)
    if which == "user":
        return user
    return detail if sep else None  # :detail fails when there is no separator


_PART_FUNCTIONS = {p: (lambda a, p=p: address_part(a, p)) for p in _ADDRESS_PARTS}


def _lower(text: str) -> str:
    # RFC 4790 §9.2: ASCII letters only; str.lower is that for ASCII text.
    if text.isascii():
        return text.lower()
    return "".join(c.lower() if c.isascii() else c for c in text)


def _same(text: str) -> str:
    return text
