"""What a Sieve run decided, for delivery to carry out: stores, redirects, a rejection, a
vacation reply, duplicate ids to remember, the edited message, errors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Store:
    """keep or fileinto: one copy into `folder` with `flags` (RFC 5232)."""

    folder: str
    flags: tuple[str, ...] = ()
    create: bool = False  # RFC 5490 fileinto :create
    special_use: str | None = None  # RFC 8579 :specialuse, the folder's role when created


@dataclass(frozen=True)
class Redirect:
    address: str
    copy: bool = False  # RFC 3894 :copy (only informative here: keep is decided already)


@dataclass(frozen=True)
class Reject:
    reason: str
    extended: bool = False  # ereject (RFC 5429 §2.1): refuse in the SMTP dialogue when possible


@dataclass(frozen=True)
class VacationReply:
    """RFC 5230: send `message` from the null sender to `recipient`, unless a reply with
    `key` went to it within `period` seconds (delivery keeps that state)."""

    recipient: str
    message: bytes
    key: str
    period: int


@dataclass
class Outcome:
    stores: list[Store] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    reject: Reject | None = None
    vacation: VacationReply | None = None
    discarded: bool = False  # nothing kept at all (discard, or every copy went elsewhere)
    message: bytes | None = None  # the message as editheader left it; None: unchanged
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (id key, seconds)
    errors: list[str] = field(default_factory=list)
    # Why no vacation reply was made although the script asked for one (RFC 3834 rules).
    vacation_skipped: str | None = None
