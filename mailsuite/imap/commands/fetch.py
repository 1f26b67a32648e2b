"""FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8) with CHANGEDSINCE/VANISHED (RFC 7162).

Item parsing belongs to `mailsuite.imap.fetch_items` and rendering to `mailsuite.imap.fetch`;
this module picks the messages, sets \\Seen, gets content ready only for the messages whose
items the renderer cannot answer from its memo (through the folder and its parsed cache, in
the thread pool when a batch is big) and writes responses in batches, waiting for the
transport when the client reads slowly."""

from __future__ import annotations

from twisted.internet import defer

from mailsuite.imap.fetch import FetchRenderer
from mailsuite.imap.fetch_items import FetchItem, FetchRequest, parse_fetch_items
from mailsuite.imap.parser import Atom, ImapBad
from mailsuite.imap.sequence import format_sequence_set, parse_sequence_set
from mailsuite.imap.turns import Turns

BATCH = 256
FIRST_BATCH = 128
# Items rendered in one batch at most (messages times the request's items): a usual request,
# of up to eight items, keeps the batches above.
ITEMS_PER_BATCH = 8 * 4 * BATCH
# Item names echoed in one batch at most (their total length times the batch's messages): a
# HEADER.FIELDS of thousands of names is one item, but each message's answer repeats its name
# and matches the header against every one of them.
LABEL_BYTES_PER_BATCH = 1 << 20
COLUMNAR_FROM = 16  # messages
# Compiled requests kept per selected folder: clients repeat the same few FETCHes.
PLANS_KEPT = 32
# Batches of at most INLINE_FILES files totalling at most INLINE_READ are read on the reactor;
# others in a thread. Each file read is also parsed into the parsed cache: a thousand small
# ones held the reactor for 150-190 ms, a few cost less than the thread hop.
INLINE_READ = 1536 * 1024
INLINE_FILES = 16
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


class _Prepared:
    """What `_prepare_batch` got ready: file bytes by UID (`preloaded`), the rendered items
    the parsed cache kept ({name: {key: bytes}}) and the messages left to render (`computed`)."""

    __slots__ = ("preloaded", "kept", "computed")

    def __init__(self, preloaded: dict, kept: dict, computed: list):
        self.preloaded = preloaded
        self.kept = kept
        self.computed = computed


def _prepare_batch(folder, live: list, needs_file: bool, cols: set, names=()) -> _Prepared:
    """Thread pool: get a batch ready so that rendering on the reactor reads no file.

    Rendered items that the parsed cache kept (`names`, of a columnar request) are loaded
    first: a message they answer whole needs nothing more.  Items that need the body: read
    every file (returned as {uid: raw bytes}).  Items the parsed cache answers: load the
    batch's rows; a message without the needed rows is read and parsed here, once, into the
    cache (header only when that is all that is asked)."""
    kept = {}
    if names:
        cache = folder.parsed_cache
        kept = {name: cache.rendered(name, live) for name in names}
        if all(kept.values()):
            live = [m for m in live if any(m.key not in found for found in kept.values())]
    if needs_file:
        raws = [(m.uid, _read(folder, m)) for m in live]
        return _Prepared({uid: raw for uid, raw in raws if raw is not None}, kept, live)
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
    return _Prepared(preloaded, kept, live)


def _fetch(session, cmd, uid: bool):
    args = cmd.args
    if len(args) < 2:
        raise ImapBad("FETCH needs a message set and items")
    view = session.view
    seqset = parse_sequence_set(args[0])
    plan = _compiled(session, view, args, uid)
    req, renderer = plan.req, plan.renderer
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
        renderer = None
    if req.wants_modseq or req.changedsince is not None:
        session.enable_condstore()  # RFC 7162 §3.1: CONDSTORE-enabling
    targets = view.select(seqset, uid)
    if len(targets) == 1 and renderer is not None and _fetch_one(session, view, plan, targets):
        return None
    if req.vanished:
        _send_vanished(session, view, seqset)
    if req.changedsince is not None:
        targets = [(s, m) for s, m in targets if m.modseq > req.changedsince]
    seen_set: set[int] = set()
    if req.sets_seen and not view.readonly:
        # RFC 3501 §6.4.5: BODY[...] (not PEEK) sets \\Seen; the FETCH then reports FLAGS.
        unseen = [m for _, m in targets if "\\Seen" not in m.flags and view.is_live(m)]
        if unseen:
            changed, _ = view.folder.store_flags(unseen, ["\\Seen"], "add", source=view)
            seen_set = {m.uid for m in changed}
    if renderer is None:
        plan = _Plan(req, _renderer(session, view, req))
    answered = _write_batches(_Batches(session, view, plan, seen_set, len(targets)), targets)
    # The implicit \Seen's renames are on disk before the tagged OK.
    return view.folder.when_written(answered) if seen_set else answered


def _fetch_one(session, view, plan: _Plan, targets: list) -> bool:
    """Answer a FETCH of one message that the index and the memos answer whole (a client
    reading messages one by one, again), without the batch machinery; False, with nothing
    done, for any other FETCH.

    Why: for such a FETCH the batches' set-up costs as much as rendering the response."""
    req, renderer = plan.req, plan.renderer
    if (
        renderer.has_flags  # FLAGS may need new keywords announced first (RFC 3501 §7.2.6)
        or req.wants_modseq
        or req.changedsince is not None
        or req.vanished
        or (req.sets_seen and not view.readonly)
        or view.pending_expunge
    ):
        return False
    seq, m = targets[0]
    if req.needs_content and renderer.needs_content(m):
        return False
    out: list = []
    renderer.render(seq, m, view.flags_of(m), None, out)
    if req.needs_file:
        session.send_batch(out)  # a body is handed on as it is, not copied (see _Batches)
    else:
        session.send(b"".join(out))
    return True


class _Plan:
    """A parsed request, its renderer and what running it needs that follows from them."""

    __slots__ = ("req", "renderer", "columns", "step", "columnar", "kept_names")

    def __init__(self, req: FetchRequest, renderer: FetchRenderer | None):
        self.req = req
        self.renderer = renderer
        self.columns = _cache_columns(req)
        # Each message of a batch renders every item: a request of many items (thousands of
        # BODY[n] fit in a command line) takes fewer messages a batch, so that a batch, which
        # runs in one reactor turn, stays about as much work as a usual one.
        step = BATCH if req.needs_file else 4 * BATCH
        labels = sum(len(it.label) for it in req.items)
        step = min(step, ITEMS_PER_BATCH // max(len(req.items), 1))
        self.step = max(1, min(step, LABEL_BYTES_PER_BATCH // max(labels, 1)))
        self.columnar = renderer is not None and renderer.columnar
        # Items whose rendered form the parsed cache keeps (a columnar request's, when it
        # keeps every memoized item of it: a message they answer needs nothing else).
        names = renderer.kept_names if self.columnar else []
        self.kept_names = tuple(dict.fromkeys(names)) if all(names) else ()


def _compiled(session, view, args: list, uid: bool) -> _Plan:
    """The request (FETCH's arguments after the message set) parsed and compiled; the plan is
    shared by later FETCHes with the same arguments, so nothing of it may be changed (one
    with modifiers is never shared, and has no renderer yet)."""
    key = _args_key(args, 1)
    plans = view.fetch_plans
    plan = plans.get((uid, key)) if key is not None else None
    if plan is not None:
        return plan
    req = parse_fetch_items(args[1:], uid_command=uid)
    if key is None or req.changedsince is not None or req.vanished:
        return _Plan(req, None)
    plan = _Plan(req, _renderer(session, view, req))
    if len(plans) >= PLANS_KEPT:
        plans.clear()
    plans[(uid, key)] = plan
    return plan


def _renderer(session, view, req: FetchRequest) -> FetchRenderer:
    # Big bodies are streamed from their files by a connection that can (the Twisted one).
    # Bodies come from the memo of bodies on such a connection too.
    state = session.imap_state
    if getattr(session.protocol, "streams_literals", False):
        return FetchRenderer(req, state.rendered, str(view.folder.path), view, state.bodies)
    return FetchRenderer(req, state.rendered, str(view.folder.path))


_ATOMS_ONLY = {Atom}


def _args_key(args: list, start: int = 0):
    """A hashable form of parsed arguments (from `start` on) made of atoms and lists; None for
    anything else (a string or a literal is never a valid item, so such a FETCH is parsed,
    and refused, each time)."""
    key = []
    for i in range(start, len(args)):
        a = args[i]
        if type(a) is list and set(map(type, a)) == _ATOMS_ONLY:
            key.append(tuple(a))  # what nearly every request's item list is
        elif isinstance(a, list):
            inner = _args_key(a)
            if inner is None:
                return None
            key.append(inner)
        elif isinstance(a, Atom):
            key.append(a)
        else:
            return None
    return tuple(key)


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


class _Batches:
    """One FETCH's responses, written a batch at a time."""

    def __init__(self, session, view, plan: _Plan, seen_set, count: int):
        self.session = session
        self.view = view
        self.req = plan.req
        self.renderer = renderer = plan.renderer
        self.columns = plan.columns
        self.seen_set = seen_set
        self.folder = view.folder
        self.has_flags = renderer.has_flags
        self.shows_flags = self.has_flags or bool(seen_set)
        # \\Seen is only ever set by BODY[] sections, which are not columnar: such a request
        # never reports FLAGS it was not asked for.  A few messages are rendered one by one:
        # setting up the columns costs more than it saves on them.
        self.columnar = plan.columnar and not seen_set and count >= COLUMNAR_FROM
        self.step = plan.step
        self.kept_names = plan.kept_names if self.columnar else ()
        self.loader = self.gone_loader = None
        self.loaded = False  # some content was loaded (the parsed cache may have rows to write)
        self._asked_loader = None

    def todo(self, msgs: list, known) -> list:
        """The messages of a batch whose content the renderer needs."""
        if not self.req.needs_content:
            return []
        if self.columnar:
            return self.renderer.misses(msgs, known)
        return [m for m in msgs if self.renderer.needs_content(m)]

    def prepare(self, todo: list, prepared: _Prepared | None = None) -> None:
        """Loaders for the batch, given what `_prepare_batch` returned (a columnar batch
        that the memo answers whole needs none)."""
        preloaded = prepared.preloaded if prepared is not None else None
        if self.req.needs_content and (todo or not self.columnar):
            folder = self.folder
            if todo:
                self.loader = folder.parsed_loader(preloaded)
                self.loaded = True
            else:
                # Nothing to load as far as can be told now (memo and bodies answer): a
                # loader is made only if one is asked for after all.
                self.loader = self._load_when_asked
            # Only messages expunged by others meanwhile need this one (see `write`).
            if self.view.pending_expunge:
                self.gone_loader = folder.expunged_loader(preloaded)
                self.loaded = True

    def _load_when_asked(self, msg):
        if self._asked_loader is None:
            self._asked_loader = self.folder.parsed_loader()
            self.loaded = True
        return self._asked_loader(msg)

    def inline(self, todo: list) -> bool:
        # A thread hop costs more than reading a few small files from the page cache.
        return not todo or (len(todo) <= INLINE_FILES and sum(m.size for m in todo) <= INLINE_READ)

    def prepare_inline(self, todo: list) -> _Prepared | None:
        prepared = (
            _prepare_batch(self.folder, todo, self.req.needs_file, self.columns, self.kept_names)
            if todo
            else None
        )
        self.prepare(todo, prepared)
        return prepared

    def recall_kept(self, msgs: list, known, prepared: _Prepared | None) -> None:
        """The rendered items the parsed cache kept go into `known` and the memo."""
        if prepared is not None and prepared.kept and known is not None:
            self.renderer.recall_kept(msgs, known, prepared.kept)

    def keep_rendered(self, prepared: _Prepared | None) -> None:
        """Hand what this batch rendered anew to the parsed cache, which keeps it for the
        first FETCH after a restart (written with the cache's next flush)."""
        if prepared is None or not self.kept_names or not prepared.computed:
            return
        kept = prepared.kept
        rendered_items = self.renderer.rendered_items
        rows = [
            (name, m.key, m.size, value)
            for m in prepared.computed
            for name, value in rendered_items(m)
            if m.key not in kept.get(name, ())
        ]
        if rows:
            self.folder.parsed_cache.keep_rendered(rows)
            self.loaded = True
            self.finish()  # written batch by batch: a big FETCH holds none of it long

    def write(self, batch: list, known) -> None:
        view, renderer, seen_set = self.view, self.renderer, self.seen_set
        out: list[bytes] = view.new_keyword_lines(m for _, m in batch) if self.shows_flags else []
        condstore = self.session.condstore
        if self.columnar:
            flags = view.flags_column([m for _, m in batch])
            loader, gone_loader = self.loader, self.gone_loader
            if view.pending_expunge:

                def load(m):
                    return (loader if view.is_live(m) else gone_loader)(m)

            else:
                load = loader
            modseq = condstore and self.has_flags
            renderer.render_batch(batch, flags, out, modseq, known, load)
            batch = []
        for seq, m in batch:
            include_flags = m.uid in seen_set
            modseq = condstore and (self.has_flags or include_flags)
            # A message another session expunged, not yet announced here, is answered with
            # what is still known (flags, cached header and structure, the file while it is
            # there), as RFC 2180 §4.1 allows; one that cannot be is left out.
            load = self.loader if view.is_live(m) else self.gone_loader
            try:
                renderer.render(seq, m, view.flags_of(m), load, out, include_flags, modseq)
            except FileNotFoundError:
                pass  # gone with its file: nothing left to answer with
        # One write per batch: per-chunk writes cost more than the FETCH itself.  The last
        # batch stays buffered, to leave in the same write as the tagged reply.  Message
        # bodies are handed on as they are, not copied into one string.
        if self.req.needs_file:
            self.session.send_batch(out)
        else:
            self.session.send(b"".join(out))

    def finish(self) -> None:
        cache = self.folder.parsed_cache if self.loaded else None
        if cache is not None and cache.has_pending:
            self.session.services.store.io.submit(cache.flush).addErrback(lambda f: None)


def _write_batches(run: _Batches, targets: list):
    """Write every response: at once when one batch answers all from memory and the page
    cache (no Deferred, no turn of the reactor), else batch by batch."""
    if len(targets) <= run.step:
        msgs = [m for _, m in targets]
        known = run.renderer.memo_lookup(msgs) if run.columnar else None
        todo = run.todo(msgs, known)
        if run.inline(todo):
            prepared = run.prepare_inline(todo)
            run.recall_kept(msgs, known, prepared)
            run.write(targets, known)
            run.keep_rendered(prepared)
            run.finish()
            return None
    return _write_batches_later(run, targets)


@defer.inlineCallbacks
def _write_batches_later(run: _Batches, targets: list):
    session, view = run.session, run.view
    turns = Turns()
    batches = _batches(targets, run.step, run.req.needs_file)
    for number, batch in enumerate(batches, 1):
        msgs = [m for _, m in batch]
        known = run.renderer.memo_lookup(msgs) if run.columnar else None
        todo = run.todo(msgs, known)
        if run.inline(todo):
            prepared = run.prepare_inline(todo)
        else:
            prepared = yield session.services.store.io.submit(
                _prepare_batch, run.folder, todo, run.req.needs_file, run.columns, run.kept_names
            )
            run.prepare(todo, prepared)
        if session.view is not view:
            return None  # the connection went away meanwhile
        run.recall_kept(msgs, known, prepared)
        run.write(batch, known)
        run.keep_rendered(prepared)
        if number < len(batches):
            yield session.drain()
            if turns.spent():
                yield turns.next()  # the other connections' turn (mailsuite.imap.turns)
                if session.view is not view:
                    return None
    run.finish()
    return None


def _batches(targets: list, step: int, needs_file: bool) -> list[list]:
    """The batches: the first one small, so that the client is reading the first responses
    while the server renders the rest, then `step` messages each; with files to read, also
    no more than READ_BUDGET bytes of them."""
    first = min(step, FIRST_BATCH)
    if not needs_file and targets:
        # No file sizes to count: the batches are slices.
        return [targets[:first]] + [targets[i : i + step] for i in range(first, len(targets), step)]
    batches: list[list] = []
    batch: list = []
    limit, size = first, 0
    for target in targets:
        m = target[1]
        if batch and (len(batch) >= limit or (needs_file and size + m.size > READ_BUDGET)):
            batches.append(batch)
            batch, limit, size = [], step, 0
        batch.append(target)
        size += m.size
    if batch:
        batches.append(batch)
    return batches


def fetch(session, cmd):
    return _fetch(session, cmd, uid=False)


def uid_fetch(session, cmd):
    return _fetch(session, cmd, uid=True)
