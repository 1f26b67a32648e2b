"""What a NOTIFY SET asked for (RFC 5465 §3, §6): the mailbox filters with their events, parsed
from the command's arguments and checked; pure, no session or store.

A filter is `selected`, `selected-delayed`, `inboxes`, `personal`, `subscribed`,
`subtree <names>` or `mailboxes <names>`; each names the events it wants or NONE.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailsuite.imap.fetch_items import FetchRequest, parse_fetch_items
from mailsuite.imap.parser import Atom, ImapBad, ImapNo

SEP = "/"

MESSAGE_NEW = "MessageNew"
MESSAGE_EXPUNGE = "MessageExpunge"
FLAG_CHANGE = "FlagChange"
MAILBOX_NAME = "MailboxName"
SUBSCRIPTION_CHANGE = "SubscriptionChange"

# The events this server reports.  AnnotationChange needs METADATA (RFC 5464) and the
# metadata events likewise: asked for, they are BADEVENT (RFC 5465 §3).
SUPPORTED = (MESSAGE_NEW, MESSAGE_EXPUNGE, FLAG_CHANGE, MAILBOX_NAME, SUBSCRIPTION_CHANGE)
_BY_UPPER = {e.upper(): e for e in SUPPORTED}

SELECTED_KINDS = ("SELECTED", "SELECTED-DELAYED")
NAMED_KINDS = ("SUBTREE", "MAILBOXES")
PLAIN_KINDS = ("INBOXES", "PERSONAL", "SUBSCRIBED")

INBOX_ONLY = frozenset({"INBOX"})


@dataclass
class Filter:
    kind: str  # one of SELECTED_KINDS, NAMED_KINDS, PLAIN_KINDS
    events: frozenset[str]
    names: tuple[str, ...] = ()
    fetch: FetchRequest | None = None  # MessageNew's attributes (selected filters only)

    def matches(self, name: str, subscribed: set[str], inboxes=INBOX_ONLY) -> bool:
        """Whether mailbox `name` (not the selected one) falls under this filter (§6)."""
        if self.kind == "PERSONAL":
            return True  # every mailbox is in the one personal namespace
        if self.kind == "INBOXES":
            return name in inboxes
        if self.kind == "SUBSCRIBED":
            return name in subscribed
        if self.kind == "MAILBOXES":
            return name in self.names
        if self.kind == "SUBTREE":
            return any(name == n or name.startswith(n + SEP) for n in self.names)
        return False


@dataclass
class NotifySpec:
    filters: list[Filter] = field(default_factory=list)
    status: bool = False  # NOTIFY SET STATUS: STATUS of every matched mailbox at once
    # RFC 5465 §6 `inboxes`: the mailboxes mail is delivered to, INBOX and those the user's
    # Sieve script files into (the session's notifier keeps it current).
    inboxes: frozenset[str] = INBOX_ONLY

    @property
    def selected(self) -> Filter | None:
        return next((f for f in self.filters if f.kind in SELECTED_KINDS), None)

    @property
    def has_inboxes(self) -> bool:
        return any(f.kind == "INBOXES" for f in self.filters)

    def filter_for(self, name: str, subscribed: set[str]) -> Filter | None:
        """The first filter other than `selected` that covers mailbox `name`."""
        for f in self.filters:
            if f.kind not in SELECTED_KINDS and f.matches(name, subscribed, self.inboxes):
                return f
        return None

    def wants(self, name: str, event: str, subscribed: set[str]) -> bool:
        f = self.filter_for(name, subscribed)
        return f is not None and event in f.events


def parse_notify_set(args: list, decode_name) -> NotifySpec:
    """`NOTIFY SET [STATUS] (filter events) ...` after SET; `decode_name(value) -> str`
    turns a mailbox argument into its name.  ImapBad for syntax, ImapNo [BADEVENT] for an
    event this server does not report."""
    spec = NotifySpec()
    rest = list(args)
    if rest and isinstance(rest[0], Atom) and rest[0].upper() == "STATUS":
        spec.status = True
        rest.pop(0)
    if not rest:
        raise ImapBad("NOTIFY SET needs at least one mailbox filter")
    unsupported = False
    kinds = set()
    for group in rest:
        if not isinstance(group, list) or len(group) < 2:
            raise ImapBad("Each NOTIFY filter is (mailboxes events)")
        f, bad = _parse_group(group, decode_name)
        unsupported = unsupported or bad
        if f.kind in SELECTED_KINDS and kinds & set(SELECTED_KINDS):
            raise ImapBad("selected given twice")
        kinds.add(f.kind)
        spec.filters.append(f)
    if unsupported:
        # RFC 5465 §3: NO [BADEVENT (the events supported)], after the syntax has been checked.
        raise ImapNo("BADEVENT (" + " ".join(SUPPORTED) + ")", "Unsupported NOTIFY event")
    return spec


def _parse_group(group: list, decode_name) -> tuple[Filter, bool]:
    head = group[0]
    if not isinstance(head, Atom):
        raise ImapBad("Invalid NOTIFY mailbox filter")
    kind = head.upper()
    names: tuple[str, ...] = ()
    rest = group[1:]
    if kind in NAMED_KINDS:
        if len(rest) < 2:
            raise ImapBad(f"{kind.lower()} needs mailbox names and events")
        arg = rest.pop(0)
        values = arg if isinstance(arg, list) else [arg]
        if not values:
            raise ImapBad("Empty mailbox list")
        names = tuple(decode_name(v) for v in values)
    elif kind not in SELECTED_KINDS + PLAIN_KINDS:
        raise ImapBad("Unknown NOTIFY mailbox filter")
    if len(rest) != 1:
        raise ImapBad("Invalid NOTIFY events")
    events, fetch, unsupported = _parse_events(rest[0])
    if fetch is not None and kind not in SELECTED_KINDS:
        # RFC 5465 §5.2: fetch attributes only for the selected mailbox.
        raise ImapBad("MessageNew attributes only for selected")
    return Filter(kind, events, names, fetch), unsupported


def _parse_events(value) -> tuple[frozenset[str], FetchRequest | None, bool]:
    if isinstance(value, Atom) and value.upper() == "NONE":
        return frozenset(), None, False
    if not isinstance(value, list) or not value:
        raise ImapBad("NOTIFY events are a list or NONE")
    events: set[str] = set()
    fetch = None
    unsupported = False
    items = list(value)
    while items:
        item = items.pop(0)
        if not isinstance(item, Atom):
            raise ImapBad("Invalid NOTIFY event")
        name = _BY_UPPER.get(item.upper())
        if name is None:
            unsupported = True
            continue
        events.add(name)
        if name == MESSAGE_NEW and items and isinstance(items[0], list):
            fetch = parse_fetch_items([items.pop(0)])
    # RFC 5465 §5.2-5.4: MessageNew and MessageExpunge go together, and FlagChange needs both.
    if (MESSAGE_NEW in events) != (MESSAGE_EXPUNGE in events):
        raise ImapBad("MessageNew and MessageExpunge must be given together")
    if FLAG_CHANGE in events and MESSAGE_NEW not in events:
        raise ImapBad("FlagChange needs MessageNew and MessageExpunge")
    return frozenset(events), fetch, unsupported
