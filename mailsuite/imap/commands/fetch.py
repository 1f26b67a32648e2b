"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8) with CHANGEDSINCE/VANISHED (RFC 7162).

Item parsing belongs to `mailsuite.imap.fetch_items` and rendering to `mailsuite.imap.fetch`;
this module picks the messages, sets \\Seen, gets content ready only for the messages whose
items the renderer cannot answer from its memo (through the folder and its parsed cache, in
the thread pool when a batch is big) and writes responses in batches, waiting for the
transport when the client reads slowly."""

from __future__ import annotations

from twisted.internet import defer

from mailsuite.imap.fetch import FetchRenderer
from mailsuite.imap.fetch_items import FetchItem, parse_fetch_items
from mailsuite.imap.parser import ImapBad
from mailsuite.imap.sequence import format_sequence_set, parse_sequence_set

BATCH = 256
# Batches whose files total at most this are read on the reactor; bigger ones in a thread.
INLINE_READ = 1536 * 1024
# A batch that reads files ends before its files pass this size (a message bigger than it
# makes a batch alone): a FETCH of many big messages holds a bounded part of them at a time.
READ_BUDGET = 16 * 1024 * 1024


def _read(folder, msg) -> bytes | None:
    """The file's bytes, None when it was renamed or removed (the render step then reads it
    through the store, which follows the rename)."""
    try:
        return folder.read_present(msg)
    except OSError:
        return None


def _cache_columns(req) -> set[str]:
    """Parsed-cache columns that answer the request's content items without the file."""
    cols = set()
    for it in req.items:
        if it.kind in ("BODYSTRUCTURE", "BODY"):
            cols.add("structure")
        elif it.kind == "ENVELOPE":
            cols.update(("header", "envelope"))
        elif it.kind in ("RFC822.HEADER", "BODY[]"):
            cols.add("header")
    return cols


def _prepare_batch(folder, live: list, needs_file: bool, cols: set) -> dict:
    """Thread pool: get a batch ready so that rendering on the reactor reads no file.

    Items that need the body: read every file (returned as {uid: raw bytes}).  Items the
    parsed cache answers: load the batch's rows; a message without the needed rows is read
    and parsed here, once, into the cache (header only when that is all that is asked)."""
    if needs_file:
        raws = [(m.uid, _read(folder, m)) for m in live]
        return {uid: raw for uid, raw in raws if raw is not None}
    cache = folder.parsed_cache
    cache.prefetch(live)
    preloaded = {}
    for m in live:
        if not cache.missing(m, cols):
            continue
        raw = _read(folder, m)
        if raw is None:
            continue
        cache.add(m.key, raw, cols)
        if len(raw) != m.size:
            preloaded[m.uid] = raw  # size mismatch: the cache row will not match, keep bytes
    return preloaded


def _fetch(session, cmd, uid: bool):
    if len(cmd.args) < 2:
        raise ImapBad("FETCH needs a message set and items")
    view = session.view
    seqset = parse_sequence_set(cmd.args[0])
    req = parse_fetch_items(cmd.args[1:], uid_command=uid)
    view.check_seqset(seqset, uid)
    if req.vanished and not (uid and session.qresync):
        # RFC 7162 §3.2.6: VANISHED only in UID FETCH, and only with QRESYNC enabled.
        raise ImapBad("VANISHED needs UID FETCH and ENABLE QRESYNC")
    if req.vanished and req.changedsince is None:
        raise ImapBad("VANISHED needs CHANGEDSINCE")
    if req.changedsince is not None and "MODSEQ" not in req.kinds():
        # RFC 7162 §3.1.4.1: CHANGEDSINCE implies the MODSEQ item.
        req.items.append(FetchItem("MODSEQ"))
        req.wants_modseq = True
    if req.wants_modseq or req.changedsince is not None:
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    targets = view.select(seqset, uid)
    if req.vanished:
        _send_vanished(session, view, seqset)
    if req.changedsince is not None:
        targets = [(s, m) for s, m in targets if m.modseq > req.changedsince]
    seen_set: set[int] = set()
    if req.sets_seen and not view.readonly:
        # RFC 3501 §6.4.5: BODY[...] (not PEEK) sets \Seen; the FETCH then reports FLAGS.
        unseen = [m for _, m in targets if "\\Seen" not in m.flags and view.is_live(m)]
        if unseen:
            changed, _ = view.folder.store_flags(unseen, ["\\Seen"], "add", source=view)
            seen_set = {m.uid for m in changed}
    return _write_batches(session, view, req, targets, seen_set, uid)


def _send_vanished(session, view, seqset) -> None:
    folder = view.folder
    top = folder.uidnext - 1
    present = {m.uid for m in view.messages}
    gone = []
    for lo, hi in seqset.resolve(max(top, 1)):
        hi = min(hi, top)
        if hi - lo > 5_000_000:
            lo = hi - 5_000_000
        gone.extend(u for u in range(lo, hi + 1) if u not in present)
    if gone:
        session.send(b"* VANISHED (EARLIER) " + format_sequence_set(gone).encode() + b"\r\n")


def _batches(targets: list, needs_file: bool) -> list[list]:
    """BATCH messages at a time (4x that when no file is read), and no more than READ_BUDGET
    bytes of files."""
    if not needs_file:
        step = 4 * BATCH
        return [targets[i : i + step] for i in range(0, len(targets), step)]
    batches: list[list] = []
    batch: list = []
    size = 0
    for target in targets:
        m = target[1]
        if batch and (len(batch) >= BATCH or size + m.size > READ_BUDGET):
            batches.append(batch)
            batch, size = [], 0
        batch.append(target)
        size += m.size
    if batch:
        batches.append(batch)
    return batches


@defer.inlineCallbacks
def _write_batches(session, view, req, targets, seen_set, uid):
    has_flags = "FLAGS" in req.kinds()
    shows_flags = has_flags or bool(seen_set)
    folder = view.folder
    # Big bodies are streamed from their files by a connection that can (the Twisted one).
    streams = view if getattr(session.protocol, "streams_literals", False) else None
    renderer = FetchRenderer(req, session.imap_state.rendered, str(folder.path), streams)
    cols = _cache_columns(req)
    loader = gone_loader = None
    # \Seen is only ever set by BODY[] sections, which are not columnar: such a request
    # never reports FLAGS it was not asked for.
    columnar = renderer.columnar and not seen_set
    known = None
    batches = _batches(targets, req.needs_file)
    for number, batch in enumerate(batches, 1):
        if columnar:
            known = renderer.memo_lookup([m for _, m in batch])
        if req.needs_content:
            if columnar:
                todo = renderer.misses([m for _, m in batch], known)
            else:
                todo = [m for _, m in batch if renderer.needs_content(m)]
            preloaded: dict = {}
            if not todo:
                pass  # index-only requests and memo hits never touch the parsed cache
            elif sum(m.size for m in todo) <= INLINE_READ:
                # A thread hop costs more than reading a few small files from the page cache.
                preloaded = _prepare_batch(folder, todo, req.needs_file, cols)
            else:
                preloaded = yield session.services.store.io.submit(
                    _prepare_batch, folder, todo, req.needs_file, cols
                )
            loader = folder.parsed_loader(preloaded)
            gone_loader = folder.expunged_loader(preloaded)
        if session.view is not view:
            return None  # the connection went away meanwhile
        out: list[bytes] = view.new_keyword_lines(m for _, m in batch) if shows_flags else []
        condstore = session.condstore
        if columnar:
            flags = view.flags_column([m for _, m in batch])

            def load_either(m, live=loader, gone=gone_loader):
                return (live if view.is_live(m) else gone)(m)

            renderer.render_batch(batch, flags, out, condstore and has_flags, known, load_either)
            batch = []
        for seq, m in batch:
            include_flags = m.uid in seen_set
            modseq = condstore and (has_flags or include_flags)
            # A message another session expunged, not yet announced here, is answered with
            # what is still known (flags, cached header and structure, the file while it is
            # there), as RFC 2180 §4.1 allows; one that cannot be is left out.
            load = loader if view.is_live(m) else gone_loader
            try:
                renderer.render(seq, m, view.flags_of(m), load, out, include_flags, modseq)
            except FileNotFoundError:
                pass  # gone with its file: nothing left to answer with
        # One write per batch: per-chunk writes cost more than the FETCH itself.  The last
        # batch stays buffered, to leave in the same write as the tagged reply.  Message
        # bodies are handed on as they are, not copied into one string.
        if req.needs_file:
            session.send_batch(out)
        else:
            session.send(b"".join(out))
        if number < len(batches):
            yield session.drain()
    if req.needs_content and folder.parsed_cache.has_pending:
        session.services.store.io.submit(folder.parsed_cache.flush).addErrback(lambda f: None)
    return None


def fetch(session, cmd):
    return _fetch(session, cmd, uid=False)


def uid_fetch(session, cmd):
    return _fetch(session, cmd, uid=True)
