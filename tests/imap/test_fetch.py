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
