"""FETCH / UID FETCH through the server (RFC 3501 §6.4.5): index-only items, body sections,
\\Seen set by BODY[] but not BODY.PEEK[], big mailboxes in batches, QRESYNC VANISHED."""

from imapclient import IMAPClient

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import USER, Raw, append_n, connect, message, selected


def client(srv) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=srv.port("imap"), ssl=False, timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    return c


def test_index_items_and_envelope(imap_server):
    c = client(imap_server)
    msg = message(1, subject="Hello")
    c.append("INBOX", msg)
    c.select_folder("INBOX")
    data = c.fetch(c.search(), ["FLAGS", "RFC822.SIZE", "INTERNALDATE", "ENVELOPE"])
    item = data[1]
    assert item[b"SEQ"] == 1 and item[b"RFC822.SIZE"] == len(msg)
    assert item[b"ENVELOPE"].subject == b"Hello"


def test_body_sets_seen_peek_does_not(imap_server):
    c = client(imap_server)
    c.append("INBOX", message(1))
    c.select_folder("INBOX")
    c.fetch([1], ["BODY.PEEK[]"])
    assert c.get_flags([1])[1] == (b"\\Recent",)
    data = c.fetch([1], ["BODY[TEXT]"])
    assert data[1][b"BODY[TEXT]"] == b"Hello there.\r\n"
    assert b"\\Seen" in data[1][b"FLAGS"]


def test_many_messages_fetched_in_batches(imap_server):
    c = connect(imap_server)
    # Deliver straight through the store: 300 messages, more than one FETCH batch.
    mbox = imap_server.mailbox(USER)
    for i in range(300):
        mbox.deliver(message(i))
    c.select("INBOX")
    typ, data = c.uid("FETCH", "1:*", "(UID FLAGS)")
    assert typ == "OK" and len(data) == 300
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [d[1] for d in data if isinstance(d, tuple)]
    assert sorted(subjects) == sorted(b"Subject: Test message %d\r\n\r\n" % i for i in range(300))


def test_uid_fetch_vanished_rfc7162(imap_server):
    append_n(connect(imap_server), 4)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"ENABLE QRESYNC")
    r.cmd(b"SELECT INBOX")
    r.cmd(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"EXPUNGE")
    out = r.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    assert out[0] == b"* VANISHED (EARLIER) 2"
    assert r.cmd(b"FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].startswith(b"t BAD")


def test_fetch_bad_set_and_items(imap_server):
    append_n(connect(imap_server), 1)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"FETCH 0 FLAGS")[-1].startswith(b"t BAD")
    assert r.cmd(b"FETCH 1 (FLAGS BOGUS)")[-1].startswith(b"t BAD")
    assert r.cmd(b"FETCH 2 FLAGS")[-1].startswith(b"t BAD")
    assert r.cmd(b"UID FETCH 99 FLAGS") == [b"t OK UID FETCH completed"]


def test_condstore_fetch_includes_modseq_with_flags(imap_server):
    append_n(connect(imap_server), 1)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX (CONDSTORE)")
    out = r.cmd(b"FETCH 1 (FLAGS)")
    assert b"MODSEQ (" in out[0]


def test_memo_renders_exactly_what_the_content_renders(tmp_path):
    """Items answered from mailsuite.imap.fetch_memo must equal those rendered from the
    message content, with every FLAGS/MODSEQ addition."""
    from mailsuite.imap import fetch as fetch_render
    from mailsuite.imap.fetch_items import parse_fetch_items
    from mailsuite.imap.parser import parse_line
    from mailsuite.message.content import MessageContent
    from mailsuite.store import Store

    store = Store(tmp_path)
    store.create_mailbox(USER)
    mbox = store.mailbox(USER)
    mbox.deliver(message(1, extra="Cc: x@example.test\r\nX-TUID: abc\r\n"), flags=["\\Seen"])
    mbox.deliver(b"Subject: no blank line at the end")
    mbox.deliver(message(3, subject="Grüße".encode().decode("latin-1")), flags=["$Work"])
    folder = mbox.folder("INBOX")
    msgs = folder.messages

    def loader(m):
        return MessageContent(folder.read(m))

    def no_content(m):
        raise AssertionError("the memo should have answered")

    requests = [
        "(UID FLAGS RFC822.SIZE)",
        "(FLAGS INTERNALDATE UID MODSEQ)",
        "(UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])",
        "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)] UID)",
        "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID)])",
        "(BODY[HEADER.FIELDS (CC)])",
        "(UID ENVELOPE BODY BODYSTRUCTURE)",
    ]
    index_only = {"(UID FLAGS RFC822.SIZE)", "(FLAGS INTERNALDATE UID MODSEQ)"}
    for text in requests:
        cmd = parse_line(b"t FETCH 1:* " + text.encode())
        renderer = fetch_render.FetchRenderer(parse_fetch_items(cmd.args[1:]))
        for seq, m in enumerate(msgs, 1):
            for include_flags, modseq in ((False, False), (True, False), (False, True)):
                renderer.memo.clear()
                assert renderer.needs_content(m) == (text not in index_only), text
                fresh: list[bytes] = []
                renderer.render(seq, m, m.flags, loader, fresh, include_flags, modseq)
                assert not renderer.needs_content(m)
                again: list[bytes] = []
                renderer.render(seq, m, m.flags, no_content, again, include_flags, modseq)
                assert b"".join(again) == b"".join(fresh), text
    # a partial is cut from the content each time
    cmd = parse_line(b"t FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>)")
    renderer = fetch_render.FetchRenderer(parse_fetch_items(cmd.args[1:]))
    out: list[bytes] = []
    renderer.render(1, msgs[0], msgs[0].flags, loader, out)
    assert renderer.needs_content(msgs[0])


def test_star_ranges_on_an_empty_mailbox_select_nothing(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"FETCH 1:* (FLAGS)") == [b"t OK FETCH completed"]
    assert r.cmd(b"STORE 1:* +FLAGS (\\Seen)") == [b"t OK STORE completed"]
    assert r.cmd(b"FETCH 1 (FLAGS)")[-1].startswith(b"t BAD")


def test_star_alone_is_the_last_message(imap_server):
    append_n(connect(imap_server), 2)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"FETCH * (UID)")[0] == b"* 2 FETCH (UID 2)"
    assert r.cmd(b"FETCH 3:* (UID)")[0] == b"* 2 FETCH (UID 2)"


def test_a_repeated_fetch_is_parsed_by_what_it_says_not_by_its_text(imap_server):
    """The compiled form of a FETCH is kept for the next one with the same arguments: a
    quoted string or a list where an earlier FETCH had an atom is still judged on its own
    (RFC 3501 §6.4.5: items are atoms), and CHANGEDSINCE is never carried over."""
    append_n(connect(imap_server), 2)
    r = selected(imap_server)
    r.cmd(b"ENABLE CONDSTORE")
    for _ in range(2):
        assert r.cmd(b"FETCH 1 FLAGS")[-1] == b"t OK FETCH completed"
        assert r.cmd(b'FETCH 1 "FLAGS"')[-1].startswith(b"t BAD")
        assert r.cmd(b"FETCH 1 (FLAGS)")[-1] == b"t OK FETCH completed"
        assert r.cmd(b"FETCH 1 ((FLAGS))")[-1].startswith(b"t BAD")
    r.cmd(b"STORE 2 +FLAGS.SILENT (\\Flagged)")
    top = int(r.cmd(b"FETCH 2 (MODSEQ)")[0].split(b"MODSEQ (")[1].split(b")")[0])
    assert r.cmd(b"FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % (top - 1))[:-1] == [
        b"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (%d))" % top
    ]
    # The same items without the modifier again answer every message, without MODSEQ
    # unless CONDSTORE reports it with FLAGS (RFC 7162 §3.2.4).
    out = r.cmd(b"FETCH 1:* (FLAGS)")
    assert len(out) == 3 and all(b"MODSEQ (" in line for line in out[:2])
    assert r.cmd(b"FETCH 1:* (UID)")[:-1] == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 2)"]


def test_few_and_many_messages_are_answered_alike(imap_server):
    """A FETCH of a few messages is rendered one message at a time, one of many column by
    column: the lines must not differ (flags, keywords announced first, header fields)."""
    mbox = imap_server.mailbox(USER)
    for i in range(40):
        mbox.deliver(message(i), flags=["\\Seen", "$Work"] if i % 3 else [])
    r = selected(imap_server)
    items = b"(UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])"
    many = r.cmd(b"FETCH 1:40 " + items)
    few = []
    for lo in range(1, 41, 4):
        few += r.cmd(b"FETCH %d:%d %s" % (lo, lo + 3, items))[:-1]
    assert [line for line in many[:-1] if b"FETCH" in line] == [
        line for line in few if b"FETCH" in line
    ]
    assert len([line for line in few if b"FETCH" in line]) == 40


def test_one_message_answers_as_it_does_among_many_rfc3501_6_4_5(imap_server):
    """A FETCH of one message that the memos answer takes a short path: each response is
    byte for byte the one the same message gets in a FETCH of many (batched, columnar)."""
    c = connect(imap_server)
    append_n(c, 20)
    c.logout()
    r = selected(imap_server)
    requests = [
        b"(BODY.PEEK[])",
        b"(UID RFC822.SIZE INTERNALDATE)",
        b"(ENVELOPE BODYSTRUCTURE)",
        b"(BODY.PEEK[HEADER.FIELDS (SUBJECT DATE)])",
        b"(BODY.PEEK[]<0.10> RFC822.SIZE)",
        b"(BODY.PEEK[TEXT])",
    ]
    for items in requests:
        for _ in range(2):  # the second time the memos answer
            many = b"\r\n".join(r.cmd(b"FETCH 1:20 " + items)[:-1])
            one = r.cmd(b"FETCH 7 " + items)
            assert one[-1].startswith(b"t OK"), (items, one)
            assert one[0].startswith(b"* 7 FETCH ("), (items, one)
            assert b"\r\n".join(one[:-1]) in many, items
            uid_one = r.cmd(b"UID FETCH 7 " + items)
            assert uid_one[0].startswith(b"* 7 FETCH ("), (items, uid_one)
    # Read-only: BODY[] sets no \Seen and reports no FLAGS (RFC 3501 §6.3.2).
    r.cmd(b"EXAMINE INBOX")
    out = r.cmd(b"FETCH 3 (BODY[])")
    assert out[-1].startswith(b"t OK") and b"FLAGS" not in out[0]
    r.cmd(b"SELECT INBOX")
    out = r.cmd(b"FETCH 3 (BODY[])")
    assert out[-1].startswith(b"t OK") and b"FLAGS (\\Seen)" in b"\r\n".join(out)


def test_an_item_asked_for_twice_is_answered_once(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    c.logout()
    r = selected(imap_server)
    out = r.cmd(b"FETCH 1:2 (FLAGS UID " + b"FLAGS " * 5000 + b"UID RFC822.SIZE)", b"f")
    assert [line.count(b"FLAGS") for line in out[:2]] == [1, 1]
    assert out[0].startswith(b"* 1 FETCH (FLAGS (") and b"UID 1 RFC822.SIZE " in out[0]
    assert out[-1] == b"f OK FETCH completed"


def test_a_request_of_thousands_of_items_takes_few_messages_a_batch():
    from mailsuite.imap.commands.fetch import BATCH, ITEMS_PER_BATCH, _Plan
    from mailsuite.imap.fetch_items import parse_fetch_items
    from mailsuite.imap.parser import parse_line

    def plan(items: bytes):
        return _Plan(parse_fetch_items(parse_line(b"t FETCH 1:* " + items).args[1:]), None)

    # What clients ask keeps the usual batches.
    assert plan(b"(UID FLAGS RFC822.SIZE)").step == 4 * BATCH
    headers = b"(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Subject Date)])"
    assert plan(headers).step == 4 * BATCH
    assert plan(b"(UID FLAGS BODY.PEEK[])").step == BATCH  # files to read
    # Thousands of sections: a batch of two messages, about as much rendering as one usual.
    many = plan(b"(" + b" ".join(b"BODY.PEEK[%d]" % n for n in range(1, 3001)) + b")")
    assert many.step == ITEMS_PER_BATCH // 3000 == 2


def test_a_request_naming_thousands_of_header_fields_takes_few_messages_a_batch():
    """One HEADER.FIELDS item of 5,000 names is one item, but its name is echoed in every
    message's response (RFC 3501 §7.4.2) and each message's header is matched against all
    of them: 10,000 messages of it were 390 MB, rendered 1,024 messages a reactor turn."""
    from mailsuite.imap.commands.fetch import BATCH, LABEL_BYTES_PER_BATCH, _Plan
    from mailsuite.imap.fetch_items import parse_fetch_items
    from mailsuite.imap.parser import parse_line

    def plan(items: bytes):
        return _Plan(parse_fetch_items(parse_line(b"t FETCH 1:* " + items).args[1:]), None)

    names = b" ".join(b"X-Header-%d" % n for n in range(5000))
    wide = plan(b"(UID BODY.PEEK[HEADER.FIELDS (" + names + b")])")
    label = len(b"BODY[HEADER.FIELDS (" + names + b")]")
    assert wide.step == LABEL_BYTES_PER_BATCH // label < 30
    # A usual list of fields keeps the usual batch.
    usual = b"(UID BODY.PEEK[HEADER.FIELDS (From To Cc Subject Date Message-ID References)])"
    assert plan(usual).step == 4 * BATCH
