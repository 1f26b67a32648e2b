"""EXPUNGE (RFC 3501 §6.4.3), UID EXPUNGE (RFC 4315 §2.1), and when other sessions hear of it
(RFC 3501 §7.4.1: never during FETCH, STORE or SEARCH)."""

from tests.imap.conftest import Raw, append_n, connect, selected


def _setup(srv, n=5):
    append_n(connect(srv), n)
    return selected(srv)


def test_expunge_reports_each_message(imap_server):
    r = _setup(imap_server)
    r.cmd(b"STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd(b"EXPUNGE")
    assert out == [b"* 4 EXPUNGE", b"* 2 EXPUNGE", b"t OK EXPUNGE completed"]
    assert len(imap_server.message_files("alice@example.test")) == 3


def test_uid_expunge_only_touches_the_given_uids(imap_server):
    r = _setup(imap_server)
    r.cmd(b"STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd(b"UID EXPUNGE 2:5")
    assert out == [b"* 3 EXPUNGE", b"* 2 EXPUNGE", b"t OK UID EXPUNGE completed"]
    assert r.cmd(b"FETCH 1 (UID FLAGS)")[0] == b"* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))"


def test_expunge_from_other_session_waits_for_an_allowed_command(imap_server):
    r = _setup(imap_server)
    other = Raw(imap_server.port("imap"))
    other.login()
    other.cmd(b"SELECT INBOX")
    other.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.cmd(b"EXPUNGE")
    # FETCH, STORE and SEARCH must not carry EXPUNGE; sequence numbers stay as they were.
    out = r.cmd(b"FETCH 1 (UID)")
    assert not any(line.endswith(b" EXPUNGE") for line in out)
    # RFC 2180 §4.1: what is still known of the expunged message is returned, with OK
    assert out == [b"* 1 FETCH (UID 1)", b"t OK FETCH completed"], out
    out = r.cmd(b"SEARCH ALL")
    assert b"* SEARCH 2 3 4 5" in out and not any(x.endswith(b" EXPUNGE") for x in out)
    out = r.cmd(b"NOOP")
    assert out == [b"* 1 EXPUNGE", b"t OK NOOP completed"]
    assert r.cmd(b"FETCH 1 (UID)")[0] == b"* 1 FETCH (UID 2)"


def test_readonly_expunge_is_refused(imap_server):
    _setup(imap_server)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"EXAMINE INBOX")
    assert r.cmd(b"EXPUNGE")[-1].startswith(b"t NO")
