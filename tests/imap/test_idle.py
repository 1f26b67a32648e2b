"""IDLE (RFC 2177): updates pushed while idling, woken by SMTP delivery, other sessions and
files dropped into the Maildir by other programs."""

import smtplib
import time

from tests.imap.conftest import USER, Raw, append_n, connect, message


def _idle(srv):
    r = Raw(srv.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    return r


def test_idle_woken_by_smtp_delivery_within_a_second(full_server):
    imap_server = full_server
    r = _idle(imap_server)
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", imap_server.port("smtp"), timeout=10) as s:
        s.sendmail("bob@example.net", [USER], message())
    r.sock.settimeout(2)
    assert r.line() == b"* 1 EXISTS"
    assert r.line() == b"* 1 RECENT"
    assert time.monotonic() - start < 1.5
    r.send(b"DONE\r\n")
    assert r.line() == b"i OK IDLE completed"


def test_idle_sees_flag_changes_and_expunges_from_other_sessions(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = _idle(imap_server)
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Flagged)")
    r.sock.settimeout(2)
    assert r.line() == b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"
    c.store("2", "+FLAGS", "(\\Deleted)")
    c.expunge()
    assert r.line().startswith(b"* 2 FETCH")
    assert r.line() == b"* 2 EXPUNGE"
    r.send(b"DONE\r\n")
    assert r.line() == b"i OK IDLE completed"


def test_idle_notices_a_file_dropped_into_new(imap_server):
    r = _idle(imap_server)
    root = imap_server.services.store.path_for(USER)
    tmp = root / "tmp" / "123.dropped.host"
    tmp.write_bytes(message().replace(b"\r\n", b"\n"))
    tmp.rename(root / "new" / "123.dropped.host")
    r.sock.settimeout(3)
    assert r.line() == b"* 1 EXISTS"


def test_idle_anything_but_done_is_bad(imap_server):
    r = _idle(imap_server)
    r.send(b"NOOP\r\n")
    assert r.line().startswith(b"i BAD")
    assert r.cmd(b"NOOP")[-1] == b"t OK NOOP completed"


def test_idle_pipelined_done(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"a SELECT INBOX\r\nb IDLE\r\nDONE\r\nc NOOP\r\n")
    out = r.until_tagged(b"c")
    assert b"+ idling" in out and b"b OK IDLE completed" in out
