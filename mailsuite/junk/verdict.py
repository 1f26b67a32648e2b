"""What the filter decided for one recipient, and how that decision is reached from its signals.

Pure.  A score is a sum of points: the word statistics (−bayes_weight … +bayes_weight), the
DNS lists' weights, a DMARC failure, rspamd's own score when it answered.  At or above
``junk_score`` the message is filed in Junk; at or above ``reject_score`` mail from outside is
refused at DATA.  Allow lists and known correspondents keep a message out of Junk whatever
its score; block lists file it there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from mailsuite.junk.classifier import Judgement

STRIPPED = (b"x-spam-status", b"x-spam-score", b"x-spam-reason")
_FORGED = re.compile(rb"(?im)^x-spam-(?:status|score|reason)[ \t]*:[^\n]*\n(?:[ \t][^\n]*\n)*")
# The strongest words named in the reason header.
REASON_WORDS = 3


@dataclass(frozen=True)
class Signal:
    """One piece of evidence found outside the words: a DNS list hit, DMARC, rspamd."""

    name: str  # what the reason header says: "DNSBL bl.example", "DMARC fail"
    points: float
    # rspamd answered: its score stands in for the built-in word statistics.
    replaces_words: bool = False


@dataclass(frozen=True)
class Verdict:
    """Where one recipient's copy goes and the headers it carries.  Sieve, which runs after
    the filter, sees these headers and may choose another folder."""

    folder: str
    score: float = 0.0
    junk: bool = False
    refuse: bool = False
    reasons: tuple[str, ...] = ()
    required: float = 0.0
    header_lines: tuple[tuple[str, str], ...] = field(default=())

    def headers(self) -> bytes:
        """The X-Spam-* fields to prepend (CRLF; the store writes LF)."""
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        # made once per verdict: the one of an untrained account serves every message
        return b"".join(f"{n}: {v}\r\n".encode("utf-8", "replace") for n, v in self.header_lines)

    def apply(self, data: bytes) -> bytes:
        """The message to store: X-Spam-* fields that came with it removed (only ours may
        be believed by the user's client or Sieve script), ours on top."""
        if not self.header_lines:
            return data
        return self.headers() + strip_forged(data)


def strip_forged(data: bytes) -> bytes:
    """`data` without X-Spam-Status/Score/Reason fields in its header."""
    # the CRLF blank line first (as SMTP hands messages over): the LF one is then looked for
    # only before it, not through the whole body
    end2 = data.find(b"\r\n\r\n")
    end = data.find(b"\n\n", 0, len(data) if end2 < 0 else end2)
    ends = [e for e in (end, end2) if e >= 0]
    cut = min(ends) + 1 if ends else len(data)
    head = data[:cut]
    if b"x-spam-" not in head.lower():
        return data
    return _FORGED.sub(b"", head) + data[cut:]


def bayes_points(judgement: Judgement, weight: float) -> float:
    return weight * (2.0 * judgement.probability - 1.0) if judgement.trained else 0.0


def decide(
    *,
    junk_folder: str | Callable[[], str],
    default_folder: str,
    judgement: Judgement | None,
    signals: list[Signal],
    listed: tuple[str, str] | None,
    correspondent: str | None,
    junk_score: float,
    reject_score: float,
    bayes_weight: float,
    may_refuse: bool | Callable[[], bool],
) -> Verdict:
    """The verdict for one recipient (see the module docstring)."""
    score = sum(s.points for s in signals)
    reasons = [f"{s.name} ({s.points:+.1f})" for s in signals if s.points]
    if judgement is not None and not any(s.replaces_words for s in signals):
        points = bayes_points(judgement, bayes_weight)
        score += points
        if judgement.trained:
            words = ", ".join(_word(t) for t, _ in judgement.clues[:REASON_WORDS])
            reason = f"words {judgement.probability:.2f} ({points:+.1f})"
            reasons.append(f"{reason}: {words}" if words else reason)
        else:
            reasons.append("words untrained")
    is_junk = score >= junk_score
    refuse = reject_score > 0 and score >= reject_score
    # asked only for a score that high: whether the client is outside costs an address parse
    refuse = refuse and (may_refuse() if callable(may_refuse) else may_refuse)
    if listed is not None:
        kind, entry = listed
        reasons.insert(0, f"{kind} list {entry}")
        is_junk = kind == "block"
        refuse = refuse and is_junk
    elif correspondent is not None:
        reasons.insert(0, f"known correspondent {correspondent}")
        is_junk = refuse = False
    # A folder chosen before the filter (trust's DMARC quarantine) is kept.
    folder = default_folder
    if is_junk:
        # asked only for junk: finding the account's \Junk folder reads a file
        folder = junk_folder() if callable(junk_folder) else junk_folder
    status = "Yes" if is_junk else "No"
    lines = (
        ("X-Spam-Status", f"{status}, score={score:.1f} required={junk_score:.1f}"),
        ("X-Spam-Score", f"{score:.1f}"),
        ("X-Spam-Reason", _printable("; ".join(reasons))[:900] or "none"),
    )
    return Verdict(folder, score, is_junk, refuse, tuple(reasons), junk_score, lines)


def _printable(text: str) -> str:
    """One header line: no control characters (names and words come from the message)."""
    if text.isprintable():
        return text  # the usual case, told by one C loop
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _word(token: str) -> str:
    # Header words keep their prefix ("subject:free"); no control characters in a header.
    if token.isprintable() and "," not in token and ";" not in token:
        return token[:40]
    return "".join(ch if ch.isprintable() and ch not in ";," else "?" for ch in token)[:40]
