"""FETCH / UID FETCH through the server (RFC 3501 §6.4.5): index-only items, body sections,
\\Seen set by BODY[] but not BODY.PEEK[], big mailboxes in batches, QRESYNC VANISHED."""

from imapclient import IMAPClient

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import USER, Raw, append_n, connect, message


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


def test_fast_renderer_matches_the_general_one(tmp_path):
    """commands/fetch_fast.py must produce exactly what mailsuite.imap.fetch produces."""
    from mailsuite.imap import fetch as fetch_items
    from mailsuite.imap import mime
    from mailsuite.imap.commands import fetch_fast
    from mailsuite.imap.parser import parse_line
    from mailsuite.store import Store

    store = Store(tmp_path)
    store.create_mailbox(USER)
    mbox = store.mailbox(USER)
    mbox.deliver(message(1, extra="Cc: x@example.test\r\nX-TUID: abc\r\n"), flags=["\\Seen"])
    mbox.deliver(b"Subject: no blank line at the end")
    mbox.deliver(message(3, subject="Grüße".encode().decode("latin-1")), flags=["$Work"])
    folder = mbox.folder("INBOX")
    msgs = folder.messages

    def header_of(m):
        return mime.header_block(folder.read(m))

    def loader(m):
        return mime.MessageContent(folder.read(m))

    requests = [
        "(UID FLAGS RFC822.SIZE)",
        "(FLAGS INTERNALDATE UID MODSEQ)",
        "(UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])",
        "(BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)] UID)",
        "(UID FLAGS BODY.PEEK[HEADER.FIELDS (X-TUID)])",
        "(BODY[HEADER.FIELDS (CC)])",
    ]
    for text in requests:
        cmd = parse_line(b"t FETCH 1:* " + text.encode())
        req = fetch_items.parse_fetch_items(cmd.args[1:])
        fast = fetch_fast.compile_request(req, header_of)
        assert fast is not None, text
        for seq, m in enumerate(msgs, 1):
            for include_flags, modseq in ((False, False), (True, False), (False, True)):
                general = b"".join(
                    fetch_items.fetch_response(
                        req, seq, m, m.flags, loader, include_flags=include_flags, modseq=modseq
                    )
                )
                assert fast(seq, m, m.flags, include_flags, modseq) == general, text
    cmd = parse_line(b"t FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (FROM)]<0.10>)")
    assert (
        fetch_fast.compile_request(fetch_items.parse_fetch_items(cmd.args[1:]), header_of) is None
    )


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
