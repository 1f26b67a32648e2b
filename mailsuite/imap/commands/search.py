"""SEARCH / UID SEARCH (RFC 3501 §6.4.4) with ESEARCH (RFC 4731), SEARCHRES (RFC 5182) and
MODSEQ (RFC 7162).  The criteria language lives in `mailsuite.imap.search`; this module runs
it over the session's view.

Searches that only test index fields, and not too many of them (`SearchProgram.runs_inline`),
run on the reactor; ones that read message text, or would take long, run in the thread pool so
other sessions are not held up."""

from __future__ import annotations

from twisted.internet import defer, threads

from mailsuite.imap import search as search_mod
from mailsuite.imap.commands.sort import loader_cache_flush
from mailsuite.imap.parser import ImapBad
from mailsuite.store.flags import SYSTEM_TO_LETTER


def _flag_only(prog, messages, view=None):
    """`(seq, msg)` hits when the whole program is one system-flag test (UNSEEN, DELETED,
    FLAGGED...: what clients poll most), as one comprehension; None otherwise.

    System flags are stored in canonical case, so membership is exact here; keywords, which
    match case-insensitively, go through the general evaluator.  With a view, the answer is
    remembered until that flag changes on some message, a message arrives or leaves, or the
    view's numbering changes."""
    node = prog.root
    flag_cls = getattr(search_mod, "_Flag", None)
    if flag_cls is None or type(node) is not flag_cls or not node.flag.startswith("\\"):
        return None
    flag, present = node.flag, node.present
    letter = SYSTEM_TO_LETTER.get(flag)
    stamp = None
    if view is not None and messages:
        folder = view.folder
        # Only a change of this flag, or a message arriving or leaving, changes the answer.
        version = folder.flag_versions[letter] if letter else folder.highestmodseq
        if messages == folder.messages:
            # The view numbers the folder's messages as the folder does (the same objects in
            # the same order: one C loop of identity tests), so such sessions share one answer.
            return view.session.imap_state.flag_search(
                folder,
                (flag, present),
                (version, folder.membership_version, len(messages)),
                lambda: _flag_hits(flag, present, letter, messages),
            )
        stamp = (
            version,
            folder.membership_version,
            len(messages),
            messages[0].uid,
            messages[-1].uid,
        )
        memo = getattr(view, "flag_search_memo", None)
        if memo is not None and memo[0] == (flag, present, stamp):
            return memo[1]
    hits = _flag_hits(flag, present, letter, messages)
    if stamp is not None:
        view.flag_search_memo = ((flag, present, stamp), hits)
    return hits


class _FlagHits(list):
    """A one-flag search's (seq, msg) hits, with the plain `* SEARCH` lines made from them
    (by UID and by number) once: formatting thousands of numbers costs more than the search,
    and the hits are shared by every poll until the flag changes."""

    __slots__ = ("lines",)

    def __init__(self, hits):
        super().__init__(hits)
        self.lines: dict[bool, bytes] = {}

    def line(self, uid: bool) -> bytes:
        line = self.lines.get(uid)
        if line is None:
            line = self.lines[uid] = _search_line(
                [m.uid for _, m in self] if uid else [s for s, _ in self]
            )
        return line


def _search_line(numbers: list[int]) -> bytes:
    """`* SEARCH` with the numbers, formatted in one pass (thousands of numbers per poll)."""
    text = " ".join(map(str, numbers))
    return ("* SEARCH " + text if text else "* SEARCH").encode() + b"\r\n"


def _flag_hits(flag: str, present: bool, letter: str | None, messages: list) -> _FlagHits:
    if letter is not None:
        # The Maildir info letters hold the same facts as m.flags; a substring test on a short
        # str is the cheapest check Python has (UNSEEN over 10,000 messages in ~0.4 ms).
        if present:
            return _FlagHits((i, m) for i, m in enumerate(messages, 1) if letter in m.info)
        return _FlagHits((i, m) for i, m in enumerate(messages, 1) if letter not in m.info)
    if present:
        return _FlagHits((i, m) for i, m in enumerate(messages, 1) if flag in m.flags)
    return _FlagHits((i, m) for i, m in enumerate(messages, 1) if flag not in m.flags)


def _uid_key(msg, loader) -> int:
    """A SEARCH result's order is mailbox order (RFC 5267 §4.1)."""
    return msg.uid


def _run(inline: bool, fn, *args):
    if inline:
        return defer.maybeDeferred(fn, *args)
    return threads.deferToThread(fn, *args)


def _search(session, cmd, uid: bool):
    view = session.view
    opts, prog = search_mod.parse_search_command(cmd.args)
    if prog.wants_modseq:
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    messages = list(view.messages)
    update = None
    if opts.update:
        # RFC 5267 §4.3: remembered before it runs, so changes meanwhile are reported after.
        update = view.contexts.begin(
            cmd.tag, uid, prog, messages, _uid_key, needs_thread=prog.needs_content
        )
    fast = None if prog.needs_content else _flag_only(prog, messages, view)
    if fast is not None:
        d = defer.succeed(fast)
    else:
        # Header keys are answered by the parsed cache; BODY/TEXT read the files (in a
        # thread).  Opened only here: the flag polls above need no cache at all.
        ctx = search_mod.context_for(session, view)
        inline = prog.runs_inline(len(messages))
        d = _run(inline, search_mod.evaluate_seqs, prog, messages, ctx)

    def answer(hits):
        if (
            type(hits) is _FlagHits
            and not (view.pending_expunge or opts.esearch or opts.save or session.rev2)
            and update is None
            and not prog.wants_modseq
        ):
            # The answer clients poll for: its line is made once per change of the flag.
            session.send(hits.line(uid))
            return None
        if view.pending_expunge:
            hits = [(s, m) for s, m in hits if view.is_live(m)]
        numbers = [m.uid for _, m in hits] if uid else [s for s, _ in hits]
        reported = [m for _, m in hits]
        if opts.esearch and (opts.min or opts.max) and not (opts.all or opts.count) and hits:
            # RFC 4731 §3.2 with RFC 7162 §3.1.5: with only MIN and/or MAX returned, MODSEQ is
            # that of the returned messages (sequence and UID order agree).
            reported = ([hits[0][1]] if opts.min else []) + ([hits[-1][1]] if opts.max else [])
        modseq = search_mod.highest_modseq(reported) if prog.wants_modseq else None
        if opts.save:
            session.saved_uids = search_mod.saved_result(opts, [m.uid for _, m in hits])
        if update is not None:
            update.install([(m.uid, m.uid) for _, m in hits])
        if session.rev2 and not opts.esearch:
            # RFC 9051 §6.4.4: IMAP4rev2 answers SEARCH with ESEARCH, ALL by default
            opts.esearch = opts.all = True
        if opts.esearch:
            line = search_mod.format_esearch(cmd.tag, uid, numbers, opts, modseq)
            if line is not None:
                session.send(line)
        elif modseq is None:
            session.send(_search_line(numbers))
        else:
            session.send(search_mod.format_search(numbers, modseq))
        return None

    def failed(failure):
        if opts.save:
            # RFC 5182 §2.1: a failed SAVE search empties the saved result.
            session.saved_uids = []
        if update is not None:
            view.contexts.drop(cmd.tag)
        return failure

    d.addCallbacks(answer, failed)
    if prog.needs_content:
        d.addBoth(_flush_cache, session, view.folder)
    return d


def _flush_cache(result, session, folder):
    # SQLite writes: the durable-I/O service's work, never the reactor's.
    if folder.parsed_cache.has_pending:
        session.services.store.io.submit(loader_cache_flush, folder).addErrback(lambda f: None)
    return result


def cancelupdate(session, cmd):
    """CANCELUPDATE "tag" ... (RFC 5267 §4.3.5): no more updates for those searches.  A tag
    without one (never updating, refused with NOUPDATE, already cancelled) is ignored."""
    if not cmd.args or not all(isinstance(a, (bytes, str)) for a in cmd.args):
        raise ImapBad("CANCELUPDATE needs the tags of updating searches")
    for tag in cmd.args:
        # The grammar says quoted; an atom names the same tag.
        name = tag.decode("ascii", "replace") if isinstance(tag, bytes) else str(tag)
        session.view.contexts.drop(name)
    return "No further updates"


def search(session, cmd):
    return _search(session, cmd, uid=False)


def uid_search(session, cmd):
    return _search(session, cmd, uid=True)
