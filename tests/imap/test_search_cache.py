"""Cached flag answers (SEARCH UNSEEN, STATUS UNSEEN) follow every change that matters: a flag
set by another session or by another program, arrivals and expunges; and survive changes to
other flags."""

from __future__ import annotations

import os

from tests.imap.conftest import USER, append_n, connect


def _uids(c, *criteria) -> list[int]:
    typ, data = c.uid("SEARCH", *criteria)
    assert typ == "OK"
    return [int(x) for x in data[0].split()]


def _status_unseen(c, name="INBOX") -> int:
    typ, data = c.status(name, "(UNSEEN)")
    assert typ == "OK"
    return int(data[0].decode().rsplit("UNSEEN ", 1)[1].rstrip(")"))


def test_unseen_answer_follows_seen_set_by_another_session(imap_server):
    a, b = connect(imap_server), connect(imap_server)
    append_n(a, 4)
    a.select("INBOX")
    b.select("INBOX")
    assert _uids(a, "UNSEEN") == [1, 2, 3, 4]
    b.uid("STORE", "2", "+FLAGS", "(\\Flagged)")  # another flag: the cached answer stays right
    assert _uids(a, "UNSEEN") == [1, 2, 3, 4]
    b.uid("STORE", "3", "+FLAGS", "(\\Seen)")
    assert _uids(a, "UNSEEN") == [1, 2, 4]
    assert _uids(a, "SEEN") == [3]
    assert _status_unseen(b, "INBOX") == 3


def test_unseen_answer_follows_arrivals_expunges_and_other_programs(imap_server):
    a = connect(imap_server)
    append_n(a, 3)
    a.select("INBOX")
    assert _uids(a, "UNSEEN") == [1, 2, 3]
    append_n(a, 1)
    a.noop()
    assert _uids(a, "UNSEEN") == [1, 2, 3, 4]
    a.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    a.expunge()
    assert _uids(a, "UNSEEN") == [2, 3, 4]
    assert _uids(a, "UNDELETED") == [2, 3, 4]
    # Another program marks UID 2 seen by renaming its file (as mutt or Dovecot would).
    mbox = imap_server.mailbox(USER)
    folder = imap_server.call(mbox.folder, "INBOX")
    msg = folder.by_uid(2)
    path = folder.message_path(msg)
    os.rename(path, path.parent.parent / "cur" / (msg.key + ":2,S"))
    later = os.stat(path.parent.parent / "cur").st_mtime_ns + 10_000_000
    os.utime(path.parent.parent / "cur", ns=(later, later))
    a.select("INBOX")
    assert _uids(a, "UNSEEN") == [3, 4]
    assert _status_unseen(a) == 2


def test_sessions_share_an_answer_only_while_they_number_messages_alike(imap_server):
    a, b = connect(imap_server), connect(imap_server)
    append_n(a, 5)
    a.select("INBOX")
    b.select("INBOX")
    assert _uids(a, "UNSEEN") == [1, 2, 3, 4, 5]
    assert b.search(None, "UNSEEN") == ("OK", [b"1 2 3 4 5"])
    b.uid("STORE", "2", "+FLAGS.SILENT", "(\\Deleted)")
    b.expunge()
    # b numbers the four left as 1-4; a has not been told of the expunge (no command since
    # that may announce it), so it still numbers five, and UID 2 is not among its hits.
    assert b.search(None, "UNSEEN") == ("OK", [b"1 2 3 4"])
    typ, data = a.search(None, "UNSEEN")
    assert typ == "OK" and data[0].split() in ([b"1", b"3", b"4", b"5"], [b"1", b"2", b"3", b"4"])
    c = connect(imap_server)
    c.select("INBOX")
    assert c.search(None, "UNSEEN") == ("OK", [b"1 2 3 4"])
    assert _uids(c, "UNSEEN") == [1, 3, 4, 5]
    c.uid("STORE", "4", "+FLAGS.SILENT", "(\\Seen)")
    assert _uids(b, "UNSEEN") == [1, 3, 5]
    assert _uids(c, "UNSEEN") == [1, 3, 5]
