"""FETCH responses (RFC 3501 §7.4.2): one renderer for every request.

    renderer = FetchRenderer(req)             # once per command, after the request is final
    renderer.needs_content(msg)               # False: index and memo answer it, no file read
    renderer.render(seq, msg, flags, content_loader, out, include_flags=..., modseq=...)
    lines = fetch_response(req, seq, msg, flags, content_loader)   # one response, as chunks

The request is compiled once into one small function per item, so that a FETCH of 10,000
messages pays the item dispatch once, not 10,000 times.  Items that depend only on the
message's content and are asked over and over (ENVELOPE, BODY, BODYSTRUCTURE, top-level
HEADER.FIELDS[.NOT]) come from the server's `fetch_memo.RenderedMemo` when rendered before.

`msg` is a store Message (uid, key, size, wire_size, internaldate, modseq); `flags` the flags
to report (store flags plus the session's \\Recent); `content_loader(msg)` returns a content
object (`mailsuite.message.content.MessageContent` or the store's
`mailsuite.store.parsed_cache.CachedContent`) and is called at most once per message, only
when an item needs it.  BINARY of a part with an unknown Content-Transfer-Encoding raises
`ImapNo("UNKNOWN-CTE", ...)` (RFC 3516 §4.2); the command should give up on the whole FETCH
then, as the RFC expects a tagged NO.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from functools import partial
from itertools import compress

from mailsuite.imap.fetch_items import FetchItem, FetchRequest, parse_fetch_items
from mailsuite.imap.fetch_memo import RenderedMemo
from mailsuite.imap.literal import STREAM_FROM, MessageLiteral
from mailsuite.imap.parser import ImapNo
from mailsuite.imap.response import flag_list, quoted_or_literal
from mailsuite.imap.sections import binary_data, section_data
from mailsuite.imap.structure_wire import bodystructure_bytes, envelope_bytes
from mailsuite.message.headers import filter_fields
from mailsuite.message.identity import content_id
from mailsuite.message.preview import preview_text

__all__ = [
    "FetchRenderer",
    "fetch_response",
    "format_internaldate",
    "parse_fetch_items",
]

# The version of the rendered items IMAP keeps in the store's parsed cache (`kept_names`):
# raise it whenever the wire form of a memoized item changes, so that older rows are never read.
KEPT_VERSION = 1
_KEPT_ITEMS = {"E": "ENVELOPE", "S": "BODYSTRUCTURE", "B": "BODY", "I": "EMAILID", "P": "PREVIEW"}
# One message's response holds at most this many times the message's size (plus the slack,
# for the header fields and structures of a small one) of content items: everything a mail
# client asks of a message together (its header, text, parts, the whole) is about twice its
# size, while sixty overlapping ranges of one big part would be sixty copies in memory.
CONTENT_TIMES = 4
CONTENT_SLACK = 1 << 20
# Field names that name themselves unambiguously in a kept item's name (RFC 5322 §3.6.8's
# printable characters but the colon); others are rendered again after a restart.
_PLAIN_FIELD = re.compile(rb"[!-9;-~]+\Z")


def _kept_name(tag) -> str | None:
    """The name under which the rendered form of a memoized item is kept in the store."""
    if isinstance(tag, tuple):
        field_set, exclude = tag
        if not all(_PLAIN_FIELD.match(n) for n in field_set):
            return None
        names = " ".join(sorted(n.decode("ascii") for n in field_set))
        return f"imap{KEPT_VERSION} HEADER.FIELDS{'.NOT' if exclude else ''} ({names})"
    item = _KEPT_ITEMS.get(tag)
    return None if item is None else f"imap{KEPT_VERSION} {item}"


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _constant(text: bytes, m, flags, load, out: list[bytes]) -> None:
    out.append(text)


def _savedate(label: bytes, m, flags, load, out: list[bytes]) -> None:
    # RFC 8514 §4: the date-time the message was saved into this mailbox, NIL when unknown.
    saved = m.saved_at
    out.append(label + (b"NIL" if saved is None else b'"%s"' % format_internaldate(saved).encode()))


def format_internaldate(ts: float) -> str:
    """RFC 3501 §9 date-time: `"dd-Mon-yyyy hh:mm:ss +zzzz"` in the local zone; the day is
    zero-padded (2DIGIT), as Dovecot sends it."""
    t = time.localtime(ts)
    off = t.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off) // 60
    return (
        f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year:04d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {sign}{off // 60:02d}{off % 60:02d}"
    )


def _literal(data: bytes) -> bytes:
    """`{n}CRLF` and the data."""
    if b"\x00" in data:
        # RFC 3501 §4.3: a literal cannot carry NUL; 0x80 stands in, as in Dovecot
        data = data.replace(b"\x00", b"\x80")
    return b"{%d}\r\n" % len(data) + data


def _literal_out(label: bytes, data: bytes, out: list[bytes]) -> None:
    """A literal without copying a big body into a new string."""
    out.append(label)
    out.append(b"{%d}\r\n" % len(data))
    # RFC 3501 §4.3: a literal cannot carry NUL; 0x80 stands in, as in Dovecot
    out.append(data.replace(b"\x00", b"\x80") if b"\x00" in data else data)


class _LoadOnce:
    """A content loader that loads a message's content once for all items needing it."""

    __slots__ = ("loader", "value")

    def __init__(self, loader: Callable):
        self.loader = loader
        self.value = None

    def __call__(self, msg):
        if self.value is None:
            self.value = self.loader(msg)
        return self.value


def _no_loader(msg):
    raise ValueError("content_loader needed")


# An item function appends its chunks to `out`: f(msg, flags, load, out), where load(msg)
# returns the message's content object.
_Part = Callable[[object, object, Callable, list], None]


class FetchRenderer:
    """The compiled form of a FetchRequest; see the module docstring."""

    def __init__(
        self,
        req: FetchRequest,
        memo: RenderedMemo | None = None,
        scope: str = "",
        stream_view=None,
        bodies: RenderedMemo | None = None,
    ):
        # `scope` names the Maildir the messages come from: memo keys are only unique in it.
        self.memo = RenderedMemo() if memo is None else memo
        self.scope = self.memo.canonical(scope)
        # Given the selected view the messages are in (its `folder`, `is_live(msg)`), BODY[]
        # and RFC822 of big live messages (whole or <partial>) are answered with a
        # `MessageLiteral` that the connection streams from the file, instead of the bytes;
        # those of the other live messages come from `bodies`, the memo of message bodies in
        # wire form, when given and holding them.
        self.stream_view = stream_view
        self._bodies = None if bodies is None else (bodies, bodies.shelf(self.scope, "wire"))
        self._streamed_only = stream_view is not None  # every loading item can stream
        # Steps (kind, argument).  Index items are done inline by `render` (a function call
        # per item would cost as much as the item); for every other kind ("call") the
        # argument is the item's compiled function.
        self._plan: list[tuple[str, object]] = []
        self._memo_shelves: list[dict] = []  # what the memo answers, per message
        # Per memoized item (the order of `memo_lookup`'s columns): its name in the store's
        # parsed cache, where its rendered form is kept across restarts (None: not kept).
        self.kept_names: list[str | None] = []
        self._loads = False  # some item always needs the content
        self._content_items = 0  # items that may need it
        self.has_flags = self._has_modseq = False
        for i, it in enumerate(req.items):
            # Every item after the first starts with its separating space.
            self._plan.append(self._compile(it, b" " if i else b""))
        if not self._plan:
            raise ValueError("a FETCH request has at least one item")
        # Every item comes from the index (UID, FLAGS, RFC822.SIZE, MODSEQ, INTERNALDATE) or
        # the memo (ENVELOPE, BODYSTRUCTURE, header fields...): `render_batch` can answer a
        # whole batch.
        self.columnar = all(what != "call" for what, _ in self._plan)

    def _compile(self, it: FetchItem, sp: bytes) -> tuple[str, object]:
        kind = it.kind
        if kind == "UID":
            return "UID", sp + b"UID %d"
        if kind == "FLAGS":
            self.has_flags = True
            return "FLAGS", sp + b"FLAGS "
        if kind == "RFC822.SIZE":
            return "RFC822.SIZE", sp + b"RFC822.SIZE %d"
        if kind == "INTERNALDATE":
            return "INTERNALDATE", sp + b'INTERNALDATE "%s"'
        if kind == "MODSEQ":
            self._has_modseq = True
            return "MODSEQ", sp + b"MODSEQ (%d)"  # RFC 7162 §3.3.2
        if kind == "SAVEDATE":
            return "call", partial(_savedate, sp + b"SAVEDATE ")
        if kind == "THREADID":
            return "call", partial(_constant, sp + b"THREADID NIL")  # RFC 8474 §5.2: none kept
        return self._compile_call(it, sp)

    def _compile_call(self, it: FetchItem, sp: bytes) -> tuple[str, object]:
        kind = it.kind
        if kind == "ENVELOPE":
            return self._memoized(sp + b"ENVELOPE ", "E", lambda c: envelope_bytes(c.envelope()))
        if kind == "BODYSTRUCTURE":
            return self._memoized(
                sp + b"BODYSTRUCTURE ", "S", lambda c: bodystructure_bytes(c.tree(), True)
            )
        if kind == "BODY":
            return self._memoized(
                sp + b"BODY ", "B", lambda c: bodystructure_bytes(c.tree(), False)
            )
        if kind == "EMAILID":
            # RFC 8474 §5.1: the same for the same content wherever it is copied or moved.
            return self._memoized(
                sp + b"EMAILID ", "I", lambda c: b"(%s)" % content_id(c.raw_bytes()).encode()
            )
        if kind == "PREVIEW":
            # RFC 8970 §3.3: a string (empty when there is no text), never longer than 256
            # characters; UTF-8 goes as a literal unless the client enabled UTF8=ACCEPT.
            return self._memoized(
                sp + b"PREVIEW ",
                "P",
                lambda c: quoted_or_literal(preview_text(c.wire(), c.tree())),
            )
        sec = it.section
        if (
            kind == "BODY[]"
            and it.partial is None
            and not sec.part
            and sec.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")
        ):
            # What clients page through mailboxes with (Thunderbird, K-9, mbsync's X-TUID).
            field_set, exclude = it.field_set, sec.text == "HEADER.FIELDS.NOT"

            def fields(c) -> bytes:
                return _literal(filter_fields(c.header(), field_set, exclude))

            return self._memoized(sp + it.label + b" ", (field_set, exclude), fields)
        self._loads = True
        self._content_items += 1
        part = _content_part(it, sp)
        if self.stream_view is None or not _streamable(it):
            self._streamed_only = False
            return "call", part
        return "call", _streamed_part(it, sp, part, self.stream_view, self._bodies)

    def _memoized(
        self, label: bytes, tag, compute: Callable[[object], bytes]
    ) -> tuple[str, object]:
        memo = self.memo
        shelf = memo.shelf(self.scope, memo.canonical(tag))
        self._memo_shelves.append(shelf)
        self.kept_names.append(_kept_name(tag))
        self._content_items += 1

        def part(m, fl, load, out) -> None:
            key = getattr(m, "key", None)
            value = None
            if key is not None:
                key = (key, m.size)
                value = shelf.get(key)
            if value is None:
                value = compute(load(m))
                if key is not None:
                    memo.put(shelf, key, value)
            out.append(label)
            out.append(value)

        return "memo", (label, shelf, compute, part)

    def memo_lookup(self, msgs: list) -> list[list]:
        """For a columnar request: per memoized item, its rendered bytes for each of `msgs`
        (None where the memo lacks them)."""
        return [
            [get((m.key, m.size)) for m in msgs]
            for get in [arg[1].get for what, arg in self._plan if what == "memo"]
        ]

    def recall_kept(self, msgs: list, known: list[list], kept: dict[str, dict]) -> None:
        """Fill the gaps of `known` (from `memo_lookup`) with the rendered forms the store kept
        (`kept`: {name: {message key: bytes}}), and put them in the memo."""
        memo = self.memo
        for name, column, shelf in zip(self.kept_names, known, self._memo_shelves, strict=True):
            found = kept.get(name) if name is not None else None
            if not found:
                continue
            for i, value in enumerate(column):
                if value is None:
                    m = msgs[i]
                    value = found.get(m.key)
                    if value is not None:
                        column[i] = value
                        memo.put(shelf, (m.key, m.size), value)

    def rendered_items(self, msg) -> list[tuple[str, bytes]]:
        """(kept name, rendered bytes) of `msg`'s memoized items that the memo holds."""
        key = (msg.key, msg.size)
        found = []
        for name, shelf in zip(self.kept_names, self._memo_shelves, strict=True):
            if name is not None:
                value = shelf.get(key)
                if value is not None:
                    found.append((name, value))
        return found

    @staticmethod
    def misses(msgs: list, known: list[list]) -> list:
        """The messages of `msgs` whose content `render_batch` needs (`known` from
        `memo_lookup`)."""
        if not any(None in column for column in known):
            return []
        if len(known) == 1:
            return [m for m, value in zip(msgs, known[0], strict=True) if value is None]
        return [m for m, *row in zip(msgs, *known, strict=True) if None in row]

    def render_batch(
        self,
        batch: list,
        flags: list,
        out: list[bytes],
        modseq: bool,
        known: list[list] | None = None,
        load: Callable | None = None,
    ) -> None:
        """Append the responses of a columnar request for `batch` [(seq, msg)], `flags` the
        flags to report per message, `modseq` as for `render`, `known` from `memo_lookup`;
        `load(msg)` gives the content of messages the memo lacks.  A message whose file is
        gone (FileNotFoundError) is left out.

        Why: this is what clients sync mailboxes with (flags, header fields).  One column per
        item, each a comprehension, zipped into one format string per line, costs half of
        rendering the messages one by one."""
        msgs = [m for _, m in batch]
        fmt = [b"* %d FETCH ("]
        columns: list[list] = [[seq for seq, _ in batch]]
        memo_columns = iter(known if known is not None else self.memo_lookup(msgs))
        contents: dict[int, object] = {}
        gone: set[int] = set()
        flag_column = None
        for what, arg in self._plan:
            if what == "FLAGS":
                fmt.append(arg + b"%s")
                flag_column = _flag_lists(flags)
                columns.append(flag_column)
            elif what == "memo":
                label, shelf, compute, _ = arg
                fmt.append(label.replace(b"%", b"%%") + b"%s")
                column = next(memo_columns)
                if None in column:
                    self._fill(column, msgs, shelf, compute, load, contents, gone)
                columns.append(column)
            else:
                fmt.append(arg)
                columns.append(_index_column(what, msgs))
        if modseq and not self.has_flags:
            fmt.append(b" FLAGS %s")
            columns.append(flag_column or _flag_lists(flags))
        if modseq and not self._has_modseq:
            fmt.append(b" MODSEQ (%d)")
            columns.append([m.modseq for m in msgs])
        fmt.append(b")\r\n")
        if gone:
            keep = [i not in gone for i in range(len(msgs))]
            columns = [list(compress(column, keep)) for column in columns]
        rows = len(columns[0])
        if not rows:
            return
        # One format for the whole batch, its arguments laid out row after row: a third
        # faster than formatting each line and joining them.
        width = len(columns)
        values: list = [None] * (rows * width)
        for i, column in enumerate(columns):
            values[i::width] = column
        out.append((b"".join(fmt) * rows) % tuple(values))

    def _fill(self, column, msgs, shelf, compute, load, contents, gone) -> None:
        """Render what the memo lacked, and keep it there."""
        if load is None:
            load = _no_loader
        memo = self.memo
        for i, value in enumerate(column):
            if value is not None or i in gone:
                continue
            m = msgs[i]
            content = contents.get(i)
            try:
                if content is None:
                    content = contents[i] = load(m)
                value = compute(content)
            except FileNotFoundError:
                gone.add(i)
                continue
            memo.put(shelf, (m.key, m.size), value)
            column[i] = value

    def needs_content(self, m) -> bool:
        """Whether rendering `m` loads its content (file or parsed cache)."""
        if self._loads and not (
            self._streamed_only
            and (m.size >= STREAM_FROM or self._body_known(m))
            and self.stream_view.is_live(m)
        ):
            return True
        if not self._memo_shelves:
            return False
        key = getattr(m, "key", None)
        if key is None:
            return True
        key = (key, m.size)
        return any(key not in shelf for shelf in self._memo_shelves)

    def _body_known(self, m) -> bool:
        return self._bodies is not None and (m.key, m.size) in self._bodies[1]

    def render(
        self,
        seq: int,
        m,
        flags,
        content_loader: Callable | None,
        out: list[bytes],
        include_flags: bool = False,
        modseq: bool = False,
    ) -> None:
        """Append one `* seq FETCH (...)` response, CRLF-terminated, to `out`.

        `include_flags` adds FLAGS when the request lacks it (after a \\Seen change, RFC 3501
        §6.4.5); `modseq` adds MODSEQ (CONDSTORE enabled and FLAGS reported, RFC 7162
        §3.2.4).  When an item fails, nothing of this response stays in `out`.
        """
        start = len(out)
        out.append(b"* %d FETCH (" % seq)
        load = content_loader
        if load is None:
            load = _no_loader
        elif self._content_items > 1:
            load = _LoadOnce(load)
        budget = None
        try:
            for what, arg in self._plan:
                if what == "call":
                    before = len(out)
                    arg(m, flags, load, out)
                    if budget is None:
                        budget = CONTENT_TIMES * _wire_size(m) + CONTENT_SLACK
                    for piece in out[before:]:
                        if type(piece) is not MessageLiteral:  # streamed: not held
                            budget -= len(piece)
                    if budget < 0:
                        raise ImapNo("LIMIT", "FETCH asks for many times the message's size")
                elif what == "memo":
                    arg[3](m, flags, load, out)
                elif what == "UID":
                    out.append(arg % m.uid)
                elif what == "FLAGS":
                    out.append(arg + flag_list(flags))
                elif what == "RFC822.SIZE":
                    out.append(arg % _wire_size(m))
                elif what == "MODSEQ":
                    out.append(arg % m.modseq)
                else:
                    out.append(arg % format_internaldate(m.internaldate).encode())
        except BaseException:
            del out[start:]
            raise
        if (include_flags or modseq) and not self.has_flags:
            out.append(b" FLAGS " + flag_list(flags))
        if modseq and not self._has_modseq:
            out.append(b" MODSEQ (%d)" % m.modseq)
        out.append(b")\r\n")


def fetch_response(
    req: FetchRequest,
    seq: int,
    msg,
    flags,
    content_loader: Callable | None = None,
    *,
    include_flags: bool = False,
    modseq: bool = False,
) -> list[bytes]:
    """One `* seq FETCH (...)` response as byte chunks (literals inline), CRLF-terminated;
    the request is compiled at its first use here, so it must be final by then."""
    renderer = req.renderer
    if renderer is None:
        renderer = req.renderer = FetchRenderer(req)
    out: list[bytes] = []
    renderer.render(seq, msg, flags, content_loader, out, include_flags, modseq)
    return out


def _flag_lists(flags: list) -> list[bytes]:
    """`flag_list` of each set; a batch holds a handful of distinct sets."""
    rendered = {f: flag_list(f) for f in set(flags)}
    return list(map(rendered.__getitem__, flags))


def _index_column(what: str, msgs: list) -> list:
    """One index item's values for `msgs`, in the form its format string takes."""
    if what == "UID":
        return [m.uid for m in msgs]
    if what == "RFC822.SIZE":
        return [m.wire_size for m in msgs]
    if what == "MODSEQ":
        return [m.modseq for m in msgs]
    return [format_internaldate(m.internaldate).encode() for m in msgs]


def _wire_size(msg) -> int:
    ws = getattr(msg, "wire_size", None)
    return ws if ws is not None else msg.size


def _content_part(it: FetchItem, sp: bytes) -> _Part:
    """Items read from the message bytes each time (they are too big to keep)."""
    kind = it.kind
    if kind == "RFC822":
        return lambda m, fl, load, out: _literal_out(sp + b"RFC822 ", load(m).wire(), out)
    if kind == "RFC822.HEADER":
        return lambda m, fl, load, out: _literal_out(sp + b"RFC822.HEADER ", load(m).header(), out)
    if kind == "RFC822.TEXT":

        def text(m, fl, load, out) -> None:
            content = load(m)
            _literal_out(sp + b"RFC822.TEXT ", content.wire()[len(content.header()) :], out)

        return text
    sec, label, partial = it.section, sp + it.label, it.partial
    if kind == "BODY[]":
        field_set = it.field_set
        return lambda m, fl, load, out: _partial_out(
            label, section_data(sec, field_set, load(m)), partial, out, binary=False
        )
    if kind == "BINARY[]":

        def binary(m, fl, load, out) -> None:
            data, decoded = binary_data(sec, load(m))
            _partial_out(label, data, partial, out, binary=decoded)

        return binary
    if kind == "BINARY.SIZE":
        return lambda m, fl, load, out: out.append(
            label + b" %d" % len(binary_data(sec, load(m))[0])
        )
    raise ValueError(f"unknown FETCH item {kind}")


def _streamable(it: FetchItem) -> bool:
    """The item is a range of the whole message's wire bytes (BODY[], RFC822, <partial>)."""
    if it.kind == "RFC822":
        return True
    sec = it.section
    return it.kind == "BODY[]" and not sec.part and sec.text == ""


def _streamed_part(it: FetchItem, sp: bytes, small: _Part, view, bodies) -> _Part:
    """A `MessageLiteral` for big live messages; for the other live ones the wire bytes kept
    in `bodies` (memo, shelf), which the first FETCH of each puts there; `small` for messages
    expunged by another session (answered from what is still there, as before).

    Why keep bodies: the stored form has LF line ends, so every FETCH of a body reads the file
    and converts it; a client (or a second device) fetching a message again gets the bytes
    as they go out, without either."""
    label = sp + (b"RFC822" if it.kind == "RFC822" else it.label) + b" "
    partial = it.partial
    origin, length = partial if partial is not None else (0, None)
    folder, is_live = view.folder, view.is_live

    def part(m, fl, load, out) -> None:
        if not is_live(m):
            small(m, fl, load, out)
            return
        if m.size >= STREAM_FROM:
            out.append(label)
            out.append(MessageLiteral(folder, m, origin, length))
            return
        if bodies is None:
            small(m, fl, load, out)
            return
        memo, shelf = bodies
        key = (m.key, m.size)
        data = shelf.get(key)
        if data is None:
            data = load(m).wire()
            # RFC 3501 §4.3: a literal cannot carry NUL; 0x80 stands in, as in Dovecot
            if b"\x00" in data:
                data = data.replace(b"\x00", b"\x80")
            memo.put(shelf, key, data)
        if partial is not None:
            data = data[origin:] if length is None else data[origin : origin + length]
        out.append(label)
        out.append(b"{%d}\r\n" % len(data))
        out.append(data)

    return part


def _partial_out(name: bytes, data, partial, out: list[bytes], binary: bool) -> None:
    if partial is not None:
        origin, length = partial
        if data is not None:
            data = data[origin:] if length is None else data[origin : origin + length]
    if data is None:
        out.append(name + b" NIL")
    elif binary or (name.lstrip(b" ").startswith(b"BINARY") and b"\x00" in data):
        # RFC 3516 §4.2: literal8 for decoded content (it may hold any octet, NUL included)
        out.append(name + b" ~{%d}\r\n" % len(data))
        out.append(data)
    else:
        _literal_out(name + b" ", data, out)
