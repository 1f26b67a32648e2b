"""mailsuite.store.parsed_cache: parse once per message, served to every later client.

`fetch()` empties IMAP's memo of rendered items first, so that what is checked here is the
parsed cache underneath it."""

from __future__ import annotations

import sqlite3
import time

import pytest

from mailsuite.imap.fetch import FetchRenderer, fetch_response, parse_fetch_items
from mailsuite.imap.fetch_memo import RenderedMemo
from mailsuite.imap.parser import parse_line
from mailsuite.imap.structure_wire import bodystructure_bytes, envelope_bytes
from mailsuite.message.codec import dump_envelope
from mailsuite.message.content import MessageContent
from mailsuite.message.envelope import envelope
from mailsuite.message.headers import parse_fields
from mailsuite.store import Store
from mailsuite.store.parsed_cache import CACHE_NAME, LAYOUT, MemoryLRU, ParsedCache
from tests.imap import msg_fixtures as F
from tests.imap.conftest import USER, append_n, connect


class Msg:
    def __init__(self, key, raw, uid=1):
        self.key = key
        self.uid = uid
        self.size = len(raw)
        self.wire_size = len(raw) + raw.count(b"\n")
        self.internaldate = 1700000000.0
        self.modseq = 1
        self.flags = frozenset()


class Reader:
    """read_raw for the cache that counts file reads."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.reads: list[str] = []

    def __call__(self, msg):
        self.reads.append(msg.key)
        return self.files[msg.key]


@pytest.fixture
def cache(tmp_path):
    c = ParsedCache(tmp_path / CACHE_NAME, memory=MemoryLRU())
    yield c
    c.close()


def fetch(req_text, msg, loader):
    # A new request renders with a memo of its own: nothing rendered before answers it.
    req = parse_fetch_items(parse_line(b"a FETCH 1 " + req_text).args[1:])
    return b"".join(fetch_response(req, 1, msg, msg.flags, loader))


def test_second_client_reads_no_file_for_envelope_bodystructure_and_header_fields(cache):
    reader = Reader({"k1": F.NESTED})
    msg = Msg("k1", F.NESTED)
    items = b"(ENVELOPE BODYSTRUCTURE BODY BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.HEADER)"
    first = fetch(items, msg, cache.loader(reader))
    assert reader.reads == ["k1"]
    second = fetch(items, msg, cache.loader(reader))
    assert second == first
    assert reader.reads == ["k1"]
    c = MessageContent(F.NESTED)
    assert envelope_bytes(c.envelope()) in first and bodystructure_bytes(c.tree()) in first


def test_cache_survives_a_restart_of_the_process(tmp_path):
    path = tmp_path / CACHE_NAME
    reader = Reader({"k1": F.SIMPLE})
    msg = Msg("k1", F.SIMPLE)
    c1 = ParsedCache(path)
    first = fetch(b"(ENVELOPE BODYSTRUCTURE)", msg, c1.loader(reader))
    c1.close()
    c2 = ParsedCache(path)
    try:
        assert fetch(b"(ENVELOPE BODYSTRUCTURE)", msg, c2.loader(reader)) == first
        assert reader.reads == ["k1"]
    finally:
        c2.close()


def test_body_sections_still_read_the_file(cache):
    reader = Reader({"k1": F.SIMPLE})
    msg = Msg("k1", F.SIMPLE)
    fetch(b"BODY.PEEK[HEADER]", msg, cache.loader(reader))
    fetch(b"BODY.PEEK[TEXT]", msg, cache.loader(reader))
    assert reader.reads == ["k1", "k1"]


def test_header_only_request_does_not_parse_or_store_structure(cache):
    reader = Reader({"k1": F.NESTED})
    msg = Msg("k1", F.NESTED)
    fetch(b"BODY.PEEK[HEADER.FIELDS (FROM)]", msg, cache.loader(reader))
    cache.flush()
    entry = cache.get("k1", msg.size)
    assert entry.header is not None and entry.structure is None
    # a later BODYSTRUCTURE fills in the rest without losing the header
    fetch(b"BODYSTRUCTURE", msg, cache.loader(reader))
    cache.flush()
    cache._memory.clear()
    entry = cache.get("k1", msg.size)
    assert entry.header and entry.structure


def test_size_mismatch_is_a_miss(cache):
    reader = Reader({"k1": F.SIMPLE})
    fetch(b"ENVELOPE", Msg("k1", F.SIMPLE), cache.loader(reader))
    assert cache.get("k1", len(F.SIMPLE)) is not None
    assert cache.get("k1", len(F.SIMPLE) + 1) is None
    reader.files["k1"] = F.NO_MIME
    out = fetch(b"ENVELOPE", Msg("k1", F.NO_MIME), cache.loader(reader))
    assert b'"plain"' in out


def test_memory_is_bounded_and_rows_come_back_from_disk(tmp_path):
    memory = MemoryLRU(budget_bytes=10 * 1024)
    c = ParsedCache(tmp_path / CACHE_NAME, memory=memory)
    try:
        files = {f"k{i}": F.SIMPLE.replace(b"Hello", b"Msg%03d" % i) for i in range(50)}
        reader = Reader(files)
        msgs = [Msg(k, v) for k, v in files.items()]
        for m in msgs:
            fetch(b"ENVELOPE", m, c.loader(reader))
        assert memory.used <= 10 * 1024 and 0 < len(memory) < 50
        c.flush()
        c.prefetch(msgs[:5])
        for m in msgs:
            assert b"Msg%03d" % int(m.key[1:]) in fetch(b"ENVELOPE", m, c.loader(reader))
        assert len(reader.reads) == 50
    finally:
        c.close()


def test_discard_and_prune_remove_rows(cache):
    reader = Reader({"a": F.SIMPLE, "b": F.NO_MIME})
    for k in ("a", "b"):
        fetch(b"ENVELOPE", Msg(k, reader.files[k]), cache.loader(reader))
    cache.discard(["a"])
    assert cache.get("a") is None and cache.get("b") is not None
    assert cache.prune(["x"]) == 1
    assert cache.get("b") is None


def test_alias_reuses_entry_for_a_copy(cache):
    reader = Reader({"a": F.NESTED})
    fetch(b"BODYSTRUCTURE", Msg("a", F.NESTED), cache.loader(reader))
    cache.alias("a", "copy", len(F.NESTED))
    out = fetch(b"BODYSTRUCTURE", Msg("copy", F.NESTED), cache.loader(reader))
    assert reader.reads == ["a"] and out.startswith(b"* 1 FETCH (BODYSTRUCTURE (((")


def test_add_message_warms_everything(cache):
    reader = Reader({"n": F.NESTED})
    cache.add_message("n", F.NESTED)
    out = fetch(
        b"(ENVELOPE BODY BODYSTRUCTURE BODY.PEEK[HEADER])", Msg("n", F.NESTED), cache.loader(reader)
    )
    assert reader.reads == []
    assert b"BODY[HEADER] {" in out


def test_corrupt_cache_file_is_replaced(tmp_path):
    path = tmp_path / CACHE_NAME
    path.write_bytes(b"this is not a sqlite database" * 100)
    c = ParsedCache(path)
    try:
        reader = Reader({"k": F.SIMPLE})
        fetch(b"ENVELOPE", Msg("k", F.SIMPLE), c.loader(reader))
        c.flush()
        assert c.get("k") is not None
    finally:
        c.close()


def test_shared_instance_per_maildir_and_folders_use_their_maildirs(tmp_path):
    a = ParsedCache.for_maildir(tmp_path)
    try:
        assert ParsedCache.for_maildir(tmp_path) is a
        assert a.path == tmp_path / CACHE_NAME
    finally:
        a.close()
    store = Store(tmp_path / "mail")
    store.create_mailbox("u@example.test")
    mbox = store.mailbox("u@example.test")
    mbox.create_folder("Lists/dev")
    inbox = mbox.folder("INBOX").parsed_cache
    try:
        assert inbox.path == mbox.path / CACHE_NAME
        assert mbox.folder("Sent").parsed_cache is inbox
        assert mbox.folder("Lists/dev").parsed_cache is inbox
    finally:
        inbox.close()


def test_a_file_of_another_layout_is_emptied(tmp_path):
    path = tmp_path / CACHE_NAME
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE parsed (key TEXT PRIMARY KEY, size INTEGER, header BLOB,"
        " envelope BLOB, bodystructure BLOB, body BLOB)"
    )
    db.execute("INSERT INTO parsed VALUES ('k', 3, x'00', x'00', x'00', x'00')")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    c = ParsedCache(path, memory=MemoryLRU())
    try:
        assert c.get("k") is None
        reader = Reader({"k": F.NESTED})
        out = fetch(b"BODYSTRUCTURE", Msg("k", F.NESTED), c.loader(reader))
        assert out.startswith(b"* 1 FETCH (BODYSTRUCTURE (((")
        c.flush()
    finally:
        c.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == LAYOUT
    db.close()


def test_envelope_is_kept_and_answered_from_its_own_column(tmp_path):
    path = tmp_path / CACHE_NAME
    reader = Reader({"k1": F.NESTED})
    msg = Msg("k1", F.NESTED)
    c1 = ParsedCache(path, memory=MemoryLRU())
    first = fetch(b"ENVELOPE", msg, c1.loader(reader))
    c1.flush()
    assert c1.get("k1", msg.size).envelope == dump_envelope(MessageContent(F.NESTED).envelope())
    c1.close()
    # The kept envelope answers, not the header: a row whose header says otherwise still
    # gives the kept envelope (after a restart, from the file).
    db = sqlite3.connect(path)
    db.execute("UPDATE parsed SET header=? WHERE key='k1'", (b"Subject: other\r\n\r\n",))
    db.commit()
    db.close()
    c2 = ParsedCache(path, memory=MemoryLRU())
    try:
        assert fetch(b"ENVELOPE", msg, c2.loader(reader)) == first
        assert reader.reads == ["k1"]
    finally:
        c2.close()


def test_a_corrupt_kept_envelope_is_parsed_again_from_the_header(cache):
    reader = Reader({"k1": F.NESTED})
    msg = Msg("k1", F.NESTED)
    first = fetch(b"ENVELOPE", msg, cache.loader(reader))
    cache.update("k1", msg.size, envelope=b"not marshal data")
    assert fetch(b"ENVELOPE", msg, cache.loader(reader)) == first
    assert reader.reads == ["k1"]  # the header came from the cache
    cache.flush()
    assert cache.get("k1", msg.size).envelope == dump_envelope(MessageContent(F.NESTED).envelope())


def test_add_keeps_only_the_columns_asked_for(cache):
    cache.add("h", F.NESTED, {"header"})
    cache.add("e", F.NESTED, {"header", "envelope"})
    cache.add("s", F.NESTED, {"header", "structure"})
    cache.add_message("all", F.NESTED)
    kept = {
        k: tuple(getattr(cache.get(k), c) is not None for c in ("header", "envelope", "structure"))
        for k in ("h", "e", "s", "all")
    }
    assert kept == {
        "h": (True, False, False),
        "e": (True, True, False),
        "s": (True, False, True),
        "all": (True, True, True),
    }
    env = MessageContent(F.NESTED).envelope()
    assert cache.loader(Reader({}))(Msg("e", F.NESTED)).envelope() == env
    assert envelope(parse_fields(cache.get("h").header)) == env


def test_a_file_of_the_previous_layout_is_emptied(tmp_path):
    """The layout before envelopes were kept: header and structure columns only."""
    path = tmp_path / CACHE_NAME
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE parsed (key TEXT PRIMARY KEY, size INTEGER, header BLOB,"
        " structure BLOB) WITHOUT ROWID"
    )
    db.execute("INSERT INTO parsed VALUES ('k', ?, x'00', x'00')", (len(F.NESTED),))
    db.execute(f"PRAGMA user_version={LAYOUT - 1}")
    db.commit()
    db.close()
    c = ParsedCache(path, memory=MemoryLRU())
    try:
        assert c.get("k") is None
        reader = Reader({"k": F.NESTED})
        out = fetch(b"(ENVELOPE BODYSTRUCTURE)", Msg("k", F.NESTED), c.loader(reader))
        assert out == fetch(
            b"(ENVELOPE BODYSTRUCTURE)", Msg("k", F.NESTED), lambda m: MessageContent(F.NESTED)
        )
        c.flush()
        assert c.get("k").envelope is not None
    finally:
        c.close()


def _render(items: bytes, msg, loader, memo: RenderedMemo, scope: str = "") -> bytes:
    req = parse_fetch_items(parse_line(b"a FETCH 1 " + items).args[1:])
    out: list[bytes] = []
    FetchRenderer(req, memo, scope).render(1, msg, msg.flags, loader, out)
    return b"".join(out)


def no_content(m):
    raise AssertionError("content loaded although the memo holds every item")


def test_imap_memo_answers_repeated_items_without_content(cache):
    reader = Reader({"k1": F.NESTED})
    msg = Msg("k1", F.NESTED)
    items = b"(ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (FROM)])"
    memo = RenderedMemo()
    first = _render(items, msg, cache.loader(reader), memo)
    assert first == fetch(items, msg, cache.loader(reader))
    assert _render(items, msg, no_content, memo) == first


def test_imap_memo_never_answers_for_another_maildir(cache):
    """Two mailboxes may hold files of the same name and size with other contents (an
    import, a copy made behind the server's back): the memo keeps them apart."""
    memo = RenderedMemo()
    one = F.NESTED
    other = one.replace(b"?= nested", b"?= NESTED", 1)  # same name and size, other bytes
    assert len(other) == len(one) and other != one
    a, b = Msg("k1", one), Msg("k1", other)
    items = b"(ENVELOPE)"
    from_a = _render(items, a, lambda m: MessageContent(one), memo, "/mail/a")
    from_b = _render(items, b, lambda m: MessageContent(other), memo, "/mail/b")
    assert from_a != from_b
    assert _render(items, b, no_content, memo, "/mail/b") == from_b


def test_one_memory_budget_for_every_mailbox(tmp_path):
    memory = MemoryLRU(budget_bytes=20 * 1024)
    caches = [ParsedCache(tmp_path / f"m{i}.sqlite", memory=memory) for i in range(20)]
    try:
        for i, c in enumerate(caches):
            reader = Reader({"k": F.NESTED})
            fetch(b"(ENVELOPE BODYSTRUCTURE)", Msg("k", F.NESTED, uid=i), c.loader(reader))
        assert memory.used <= 20 * 1024
        # evicted entries still come back from each mailbox's file, without a file read
        for i, c in enumerate(caches):
            c.flush()
            reader = Reader({})
            fetch(b"ENVELOPE", Msg("k", F.NESTED, uid=i), c.loader(reader))
            assert reader.reads == []
    finally:
        for c in caches:
            c.close()


def test_fetch_envelope_through_the_server_keeps_envelopes_and_parses_no_tree(imap_server):
    """ENVELOPE alone fills the envelope column (what the next client's ENVELOPE reads)
    and leaves the MIME tree unparsed."""
    c = connect(imap_server)
    try:
        append_n(c, 3)
        c.select("INBOX")
        typ, data = c.fetch("1:3", "(ENVELOPE)")
        assert typ == "OK" and len(data) == 3
    finally:
        c.logout()
    path = imap_server.mailbox(USER).path / CACHE_NAME
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline:
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT envelope, structure FROM parsed").fetchall()
        except sqlite3.OperationalError:
            rows = []
        finally:
            db.close()
        if len(rows) == 3 and all(env is not None for env, _ in rows):
            break
        time.sleep(0.05)
    assert len(rows) == 3
    assert all(env is not None and structure is None for env, structure in rows)


def test_rendered_items_are_kept_by_name_and_size(tmp_path):
    path = tmp_path / CACHE_NAME
    c1 = ParsedCache(path, memory=MemoryLRU())
    c1.keep_rendered(
        [
            ("imap1 ENVELOPE", "a", 10, b"(env a)"),
            ("imap1 ENVELOPE", "b", 20, b"(env b)"),
            ("imap1 BODY", "a", 10, b"(body a)"),
        ]
    )
    assert c1.has_pending
    c1.close()
    c2 = ParsedCache(path, memory=MemoryLRU())
    try:
        msgs = [Msg("a", b"x" * 10), Msg("b", b"x" * 21), Msg("c", b"x" * 5)]
        # b's row is of another size (a reused name): not answered; c was never kept.
        assert c2.rendered("imap1 ENVELOPE", msgs) == {"a": b"(env a)"}
        assert c2.rendered("imap1 BODY", msgs) == {"a": b"(body a)"}
        assert c2.rendered("imap2 ENVELOPE", msgs) == {}
        c2.discard(["a"])
        assert c2.rendered("imap1 ENVELOPE", msgs) == {}
        c2.keep_rendered([("imap1 ENVELOPE", "c", 5, b"(env c)")])
        c2.flush()
        assert c2.rendered("imap1 ENVELOPE", msgs) == {"c": b"(env c)"}
        assert c2.prune(["x"]) == 2  # b's and c's rows
        assert c2.rendered("imap1 ENVELOPE", msgs) == {}
    finally:
        c2.close()


def test_a_layout_change_drops_kept_rendered_items(tmp_path):
    path = tmp_path / CACHE_NAME
    c1 = ParsedCache(path, memory=MemoryLRU())
    c1.keep_rendered([("imap1 ENVELOPE", "a", 10, b"(env a)")])
    c1.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={LAYOUT - 1}")
    db.close()
    c2 = ParsedCache(path, memory=MemoryLRU())
    try:
        assert c2.rendered("imap1 ENVELOPE", [Msg("a", b"x" * 10)]) == {}
    finally:
        c2.close()


def _rendered_rows(path) -> list:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT name, key, value FROM rendered").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def test_first_header_fetch_after_a_restart_is_answered_from_the_kept_rendering(imap_server):
    """A whole-mailbox FETCH of header fields keeps what it rendered in the parsed cache; with
    IMAP's memo and the cache's memory empty (as after a restart), the same FETCH answers from
    those rows alone: byte for byte the first answer, though the header rows it would
    otherwise render from now say something else."""
    request = "(BODY.PEEK[HEADER.FIELDS (SUBJECT FROM DATE)])"
    c = connect(imap_server)
    try:
        append_n(c, 20)
        c.select("INBOX")
        typ, first = c.fetch("1:*", request)
        assert typ == "OK" and len([d for d in first if isinstance(d, tuple)]) == 20
    finally:
        c.logout()
    mbox = imap_server.mailbox(USER)
    path = mbox.path / CACHE_NAME
    deadline = time.monotonic() + 10
    rows: list = []
    while time.monotonic() < deadline and len(rows) < 20:
        rows = _rendered_rows(path)
        time.sleep(0.05)
    assert len(rows) == 20
    assert {name for name, _, _ in rows} == {"imap1 HEADER.FIELDS (date from subject)"}
    kept = {value for _, _, value in rows}
    assert all(b"{%d}\r\n" % len(d[1]) + d[1] in kept for d in first if isinstance(d, tuple))

    def forget():
        cache = imap_server.services.store.mailbox(USER).folder("INBOX").parsed_cache
        cache.flush()
        db = sqlite3.connect(path)
        db.execute("UPDATE parsed SET header = ?", (b"Subject: not this\r\n\r\n",))
        db.commit()
        db.close()
        cache._memory.clear()  # the process's memory of parsed rows, as after a restart
        imap_server.services.imap.rendered.clear()

    imap_server.call(forget)
    c = connect(imap_server)
    try:
        c.select("INBOX")
        typ, again = c.fetch("1:*", request)
        assert typ == "OK" and again == first
        # A field set never kept is rendered from the (changed) header rows as usual.
        typ, other = c.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert other[0][1] == b"Subject: not this\r\n\r\n"
    finally:
        c.logout()


def test_kept_names_stand_for_exactly_one_item():
    from mailsuite.imap.fetch import KEPT_VERSION, _kept_name

    assert _kept_name("E") == f"imap{KEPT_VERSION} ENVELOPE"
    a = _kept_name((frozenset({b"from", b"to"}), False))
    assert a == f"imap{KEPT_VERSION} HEADER.FIELDS (from to)"
    assert _kept_name((frozenset({b"from", b"to"}), True)) != a
    assert _kept_name((frozenset({b"from to"}), False)) is None  # a quoted name with a space
    assert _kept_name((frozenset({b"x\xff"}), False)) is None
