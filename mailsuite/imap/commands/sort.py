"""SORT and UID SORT (RFC 5256 §3): criteria parsing, base-subject extraction, sent dates,
ordering, and the command handlers.

Usage:

    criteria, prog = parse_sort_command(args)   # `(REVERSE DATE) UTF-8 ALL`; ImapBad / ImapNo
    hits = search.evaluate_seqs(prog, view, ctx)
    ordered = sort_messages(criteria, hits, content_loader)   # [(seq, msg)] in SORT order
    "* SORT " + numbers (seq or uid) + "\\r\\n"                 # format_sort()

Only ARRIVAL and SIZE come from the index; the other keys read header fields through the
content loader (the parsed cache makes that a lookup, not a file read).  Text keys compare with
i;unicode-casemap (RFC 5051), as RFC 5255 §4.2 asks of an I18NLEVEL=1 server; each message's
keys are computed once and kept (`_KEYS`), so a repeated SORT reads no header again.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from twisted.internet import defer, threads

from mailsuite.imap import search as search_mod
from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.search import (
    SearchOptions,
    SearchProgram,
    parse_return_options,
    parse_search,
)
from mailsuite.message.addresses import parse_addresses
from mailsuite.message.casemap import casemap
from mailsuite.message.dates import parse_date_header
from mailsuite.message.decode import decode_header_value
from mailsuite.message.headers import first_value

__all__ = [
    "parse_sort_criteria",
    "parse_sort_command",
    "sort_messages",
    "format_sort",
    "base_subject",
    "subject_form",
    "sent_date",
    "SORT_KEYS",
]

SORT_KEYS = (
    "ARRIVAL",
    "CC",
    "DATE",
    "FROM",
    "REVERSE",
    "SIZE",
    "SUBJECT",
    "TO",
    "DISPLAYFROM",  # RFC 5957
    "DISPLAYTO",
)


def parse_sort_criteria(arg) -> list[tuple[str, bool]]:
    """`(REVERSE DATE SUBJECT)` -> [("DATE", True), ("SUBJECT", False)] (RFC 5256 §5)."""
    if not isinstance(arg, list) or not arg:
        raise ImapBad("SORT needs a parenthesized list of criteria")
    out = []
    seen: set[str] = set()
    reverse = False
    for t in arg:
        if not isinstance(t, Atom):
            raise ImapBad("Invalid SORT criterion")
        up = t.upper()
        if up == "REVERSE":
            if reverse:
                raise ImapBad("REVERSE twice")
            reverse = True
            continue
        if up not in SORT_KEYS:
            raise ImapBad(f"Unknown SORT criterion {t[:30]}")
        if up not in seen:
            # A key given again never changes the order (the messages it would tell apart
            # already differ by it), so it is dropped: thousands of them in a command line
            # made every comparison walk thousands of keys.
            seen.add(up)
            out.append((up, reverse))
        reverse = False
    if reverse or not out:
        raise ImapBad("REVERSE must precede a criterion")
    return out


def parse_sort_command(args: list) -> tuple[list[tuple[str, bool]], SearchProgram]:
    """`(criteria) charset search-key...` (RFC 5256 §3: the charset is mandatory)."""
    criteria, prog, _ = parse_esort_command(args)
    return criteria, prog


def parse_esort_command(args: list) -> tuple[list[tuple[str, bool]], SearchProgram, SearchOptions]:
    """`[RETURN (opts)] (criteria) charset search-key...` (ESORT, RFC 5267 §3)."""
    opts, args = parse_return_options(args)
    if len(args) < 3:
        raise ImapBad("SORT needs criteria, a charset and search keys")
    criteria = parse_sort_criteria(args[0])
    charset = args[1]
    if not isinstance(charset, (str, bytes)):
        raise ImapBad("Invalid charset")
    return criteria, parse_search(list(args[2:]), charset=charset), opts


# --- base subject (RFC 5256 §2.1) --------------------------------------------------------------

_WS_RE = re.compile(r"[ \t\r\n]+")
_BLOB = r"\[[^\[\]]*\][ \t]*"
# Blobs split one way only (each starts with "[" and ends at the first "]" and its blanks),
# so the run is taken possessively; "re"/"fwd" cannot start where a blob does, so giving
# blobs back could never let the rest match.
_BLOBS_RE = re.compile(r"(?:" + _BLOB + r")*+")
_REFWD_TAIL_RE = re.compile(r"(?:re|fwd?)[ \t]*(?:" + _BLOB + r")?:", re.IGNORECASE)
_BLOB_RE = re.compile(_BLOB)


def base_subject(value: bytes | None) -> tuple[str, bool]:
    """(base subject, is_reply_or_forward) of a raw Subject value (RFC 5256 §2.1)."""
    if value is None:
        return "", False
    return _extract_base(_WS_RE.sub(" ", decode_header_value(value)).strip())


def subject_form(value: bytes | None) -> tuple[str, bool]:
    """(base subject in i;unicode-casemap form, is_reply_or_forward): what SORT SUBJECT and
    THREAD compare (RFC 5255 §4.2).

    The decoded text is case-mapped before the extraction, so the comparator also decides
    what a "Re:" or "[blob]" is: "Ｒｅ：", "ＦＷＤ:" and "［list］" are the ASCII ones once
    mapped (Dovecot extracts the same way)."""
    if value is None:
        return "", False
    return _extract_base(_WS_RE.sub(" ", casemap(decode_header_value(value))).strip())


def _extract_base(s: str) -> tuple[str, bool]:
    """RFC 5256 §2.1 steps (2)-(6) on a decoded, whitespace-squeezed subject.

    The subject is hostile input (SORT and THREAD read every message's), so the steps work
    on the bounds [lo, hi) of `s` and never copy it or rescan it from the start: each
    character is looked at a bounded number of times, however many "Re:", "[blob]", "(fwd)"
    or "[fwd: ...]" it is made of."""
    reply = False
    lo, hi = 0, len(s)
    while True:
        # (2) trailing "(fwd)" and whitespace
        hi, forwarded = _strip_trailer(s, lo, hi)
        # (3)-(5) leading subj-refwd / WSP / subj-blob
        lo, replied = _strip_leader(s, lo, hi)
        reply = reply or forwarded or replied
        # (6) "[fwd: ... ]"
        if s[lo : lo + 5].lower() == "[fwd:" and hi - lo >= 6 and s[hi - 1] == "]":
            lo, hi = lo + 5, hi - 1
            reply = True
            continue
        break
    return s[lo:hi], reply


def _strip_trailer(s: str, lo: int, hi: int) -> tuple[int, bool]:
    """Step (2) on s[lo:hi]: (new hi, whether a "(fwd)" went).  The trailer is a run of
    white space and "(fwd)"s, which reads one way only from its right end."""
    forwarded = False
    while hi > lo:
        if s[hi - 1].isspace():
            hi -= 1
        elif hi - lo >= 5 and s[hi - 5 : hi].lower() == "(fwd)":
            hi -= 5
            forwarded = True
        else:
            break
    return hi, forwarded


def _strip_leader(s: str, lo: int, hi: int) -> tuple[int, bool]:
    """Steps (3)-(5) on s[lo:hi], which ends in no white space (step 2 took it): (new lo,
    whether a subj-refwd went).

    When no subj-refwd follows the blobs from `lo`, none follows them from any later blob of
    that run either: `no_refwd_until` remembers the run's end so that taking its blobs off
    one at a time does not read the rest of the run again for each."""
    replied = False
    no_refwd_until = -1
    while True:
        start = lo
        while lo < hi and s[lo] in " \t":
            lo += 1
        changed = lo != start
        if lo > no_refwd_until:
            blobs_end = _BLOBS_RE.match(s, lo, hi).end()
            m = _REFWD_TAIL_RE.match(s, blobs_end, hi)
            if m:
                lo, changed, replied = m.end(), True, True
            else:
                no_refwd_until = blobs_end
        m = _BLOB_RE.match(s, lo, hi)
        if m and m.end() < hi:  # a blob is dropped only when text follows it
            lo, changed = m.end(), True
        if not changed:
            return lo, replied


def sent_date(fields, internaldate: float) -> float:
    """Date: as UTC seconds; the internal date when missing or unparsable (RFC 5256 §2.2)."""
    parsed = parse_date_header(first_value(fields, b"date"))
    return parsed[1] if parsed else internaldate


def _first_mailbox(fields, name: bytes) -> str:
    """addr-mailbox of the first address of a header (RFC 5256 §3 CC/FROM/TO) in
    i;unicode-casemap form (a UTF-8 local part, RFC 6532, compares as text too)."""
    addrs = parse_addresses(first_value(fields, name))
    if not addrs:
        return ""
    # The first address as ENVELOPE lists it; for a group that is the group name (Dovecot
    # reads RFC 5256 the same way).
    return casemap((addrs[0][2] or b"").decode("utf-8", "replace"))


# --- ordering ---------------------------------------------------------------------------------


def _display_name(fields, name: bytes) -> str:
    """RFC 5957 §3: the first address's display name (RFC 2047 words decoded), or its
    addr-spec when it has none; in i;unicode-casemap form."""
    addrs = parse_addresses(first_value(fields, name))
    if not addrs:
        return ""
    display, _, mailbox, host = addrs[0][:4]
    if display:
        text = decode_header_value(display)
    else:
        text = (mailbox or b"").decode("utf-8", "replace")
        if host:
            text += "@" + host.decode("utf-8", "replace")
    return casemap(_WS_RE.sub(" ", text).strip())


def _subject_key(fields, msg=None) -> str:
    return subject_form(first_value(fields, b"subject"))[0]


def _date_key(fields, msg) -> float:
    return sent_date(fields, msg.internaldate)


def _header_key(criterion: str) -> Callable:
    """(fields, msg) -> the sort key of DATE, SUBJECT, FROM, TO, CC, DISPLAYFROM or DISPLAYTO."""
    if criterion == "DATE":
        return _date_key
    if criterion == "SUBJECT":
        return _subject_key
    if criterion in ("DISPLAYFROM", "DISPLAYTO"):
        name = criterion[len("DISPLAY") :].lower().encode()
        return lambda fields, msg: _display_name(fields, name)
    name = criterion.lower().encode()
    return lambda fields, msg: _first_mailbox(fields, name)


# Header sort keys by (message key, size, criterion): a message file (and its internal date)
# never changes under its key, so a key computed once (fields read, words decoded, base subject
# extracted, case mapped) serves every later SORT of any session.  Bounded by clearing, like
# SEARCH's decoded fields.
_KEYS: dict[tuple[str, int, str], object] = {}
_KEYS_MAX = 100_000  # about 20 MB at most


def sort_messages(
    criteria: list[tuple[str, bool]], pairs: list[tuple], content_loader: Callable | None
) -> list[tuple]:
    """Order `(seq, msg)` pairs by the criteria; ties keep sequence order (RFC 5256 §3)."""
    items = sorted(pairs, key=lambda p: p[0])
    cache: dict[int, object] = {}

    def fields_of(msg):
        f = cache.get(id(msg))
        if f is None:
            f = content_loader(msg).fields()
            cache[id(msg)] = f
        return f

    # Store messages have a key; a message without one (a test's stand-in) is never kept.
    keyed = bool(pairs) and hasattr(pairs[0][1], "key")
    if keyed and len(_KEYS) + len(pairs) * len(criteria) > _KEYS_MAX:
        _KEYS.clear()

    def kept(criterion: str, of_fields: Callable) -> Callable:
        def keyfn(p):
            msg = p[1]
            k = (msg.key, msg.size, criterion)
            v = _KEYS.get(k)
            if v is None:
                v = _KEYS[k] = of_fields(fields_of(msg), msg)
            return v

        return keyfn

    for key, reverse in reversed(criteria):
        if key == "ARRIVAL":
            keyfn = lambda p: p[1].internaldate  # noqa: E731
        elif key == "SIZE":
            keyfn = lambda p: p[1].wire_size  # noqa: E731
        elif keyed:
            keyfn = kept(key, _header_key(key))
        else:
            of_fields = _header_key(key)
            keyfn = lambda p, f=of_fields: f(fields_of(p[1]), p[1])  # noqa: E731
        # Python's sort is stable for reverse=True as well, so equal keys keep their order.
        items.sort(key=keyfn, reverse=reverse)
    return items


class _Descending:
    """A sort key compared the other way round (REVERSE in a composite key)."""

    __slots__ = ("v",)

    def __init__(self, v):
        self.v = v

    def __lt__(self, other) -> bool:
        return other.v < self.v

    def __eq__(self, other) -> bool:
        return self.v == other.v

    def __hash__(self) -> int:
        return hash(self.v)


def order_key(criteria: list[tuple[str, bool]]) -> Callable:
    """`key(msg, content_loader) -> tuple` ordering messages as `sort_messages` does, for
    keeping a sorted result up to date one message at a time (RFC 5267 CONTEXT=SORT): the
    criteria in turn, REVERSE ones inverted, then the UID (ties keep mailbox order, RFC
    5256 §3)."""

    def key(msg, content_loader):
        fields = None
        parts: list = []
        for name, reverse in criteria:
            if name == "ARRIVAL":
                v = msg.internaldate
            elif name == "SIZE":
                v = msg.wire_size
            else:
                if fields is None:
                    fields = content_loader(msg).fields()
                v = _header_key(name)(fields, msg)
            parts.append(_Descending(v) if reverse else v)
        parts.append(msg.uid)
        return tuple(parts)

    return key


def format_sort(numbers) -> bytes:
    """`* SORT 2 3 1` (RFC 5256 §4)."""
    return b"* SORT" + b"".join(b" %d" % n for n in numbers) + b"\r\n"


def run_command(session, view, cmd, uid: bool):
    """SORT / UID SORT over a selected view (the command module's entry point).

    The only part of this module that knows sessions: it evaluates the search and sorts in
    the thread pool when header fields are needed, then sends `* SORT`.
    """
    criteria, prog, opts = parse_esort_command(cmd.args)
    if prog.wants_modseq:
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    ctx = search_mod.context_for(session, view)
    messages = list(view.messages)
    needs_headers = prog.needs_content or any(k not in ("ARRIVAL", "SIZE") for k, _ in criteria)
    update = None
    keyed: list = []
    if opts.update:
        # RFC 5267 §4.3: remembered before it runs, so changes meanwhile are reported after.
        key_of = order_key(criteria)
        update = view.contexts.begin(cmd.tag, uid, prog, messages, key_of, needs_headers)

    def work():
        hits = search_mod.evaluate_seqs(prog, messages, ctx)
        if update is None:
            ordered = sort_messages(criteria, hits, ctx.content_loader)
        else:
            # One ordering for the answer and for the positions of later updates.
            keys = {m.uid: key_of(m, ctx.content_loader) for _, m in hits}
            ordered = sorted(hits, key=lambda p: keys[p[1].uid])
            keyed[:] = [(keys[m.uid], m.uid) for _, m in ordered]
        loader_cache_flush(view.folder)
        return ordered

    inline = not needs_headers and prog.runs_inline(len(messages))
    d = defer.maybeDeferred(work) if inline else threads.deferToThread(work)

    def answer(ordered):
        ordered = [(s, m) for s, m in ordered if view.is_live(m)]
        if update is not None:
            live = {m.uid for _, m in ordered}
            update.install([k for k in keyed if k[1] in live])
        numbers = [m.uid for _, m in ordered] if uid else [s for s, _ in ordered]
        # RFC 7162 §3.1.5 applies to SORT too: the highest modseq of the results.
        hi = search_mod.highest_modseq([m for _, m in ordered]) if prog.wants_modseq else None
        if opts.save:
            session.saved_uids = search_mod.saved_result(opts, [m.uid for _, m in ordered])
        if opts.esearch:
            line = search_mod.format_esearch(cmd.tag, uid, numbers, opts, hi, ordered=True)
            if line is not None:
                session.send(line)
            return
        line = format_sort(numbers)
        if hi is not None and numbers:
            line = line[:-2] + b" (MODSEQ %d)\r\n" % hi
        session.send(line)

    def failed(failure):
        if update is not None:
            view.contexts.drop(cmd.tag)
        return failure

    d.addCallbacks(answer, failed)
    return d


def loader_cache_flush(folder) -> None:
    folder.parsed_cache.flush()


def sort(session, cmd):
    return run_command(session, session.view, cmd, uid=False)


def uid_sort(session, cmd):
    return run_command(session, session.view, cmd, uid=True)
