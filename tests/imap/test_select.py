"""SELECT/EXAMINE responses (RFC 3501 §6.3.1), \\Recent, CONDSTORE/QRESYNC SELECT parameters
(RFC 7162), CLOSE and UNSELECT (RFC 3691)."""

from tests.imap.conftest import Raw, append_n, connect


def test_select_reports_counts_and_codes(imap_server):
    append_n(connect(imap_server), 3)
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"SELECT INBOX")
    text = b"\n".join(out)
    assert b"* 3 EXISTS" in out and b"* 3 RECENT" in out
    assert b"* OK [UNSEEN 1]" in text and b"[UIDNEXT 4]" in text and b"[UIDVALIDITY " in text
    assert b"[HIGHESTMODSEQ " in text
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)" in out
    assert out[-1].startswith(b"t OK [READ-WRITE]")
    # \Recent belongs to one session only (RFC 3501 §2.3.2).
    r2 = Raw(imap_server.port("imap"))
    r2.login()
    assert b"* 0 RECENT" in r2.cmd(b"SELECT INBOX")


def test_examine_is_read_only(imap_server):
    append_n(connect(imap_server), 1)
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"EXAMINE INBOX")
    assert out[-1].startswith(b"t OK [READ-ONLY]")
    assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox" in out
    assert r.cmd(b"STORE 1 +FLAGS (\\Seen)")[-1].startswith(b"t NO")
    r.cmd(b"FETCH 1 BODY[]")
    assert b"\\Seen" not in b"".join(r.cmd(b"FETCH 1 FLAGS"))


def test_select_nonexistent_leaves_nothing_selected(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"SELECT Nope")[-1].startswith(b"t NO")
    assert r.cmd(b"FETCH 1 FLAGS")[-1].startswith(b"t BAD")


def test_keywords_appear_in_flags(imap_server):
    c = connect(imap_server)
    append_n(c, 1)
    c.select("INBOX")
    c.store("1", "+FLAGS", "($Forwarded Work)")
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"SELECT INBOX")
    flags_line = [line for line in out if line.startswith(b"* FLAGS")][0]
    assert b"$Forwarded" in flags_line and b"Work" in flags_line


def test_condstore_select_and_qresync_resync_rfc7162(imap_server):
    c = connect(imap_server)
    append_n(c, 4)
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"ENABLE QRESYNC")[0] == b"* ENABLED QRESYNC CONDSTORE"
    out = r.cmd(b"SELECT INBOX (CONDSTORE)")
    uidvalidity = int([x for x in out if b"UIDVALIDITY" in x][0].split()[3].rstrip(b"]"))
    highest = int([x for x in out if b"HIGHESTMODSEQ" in x][0].split()[3].rstrip(b"]"))
    r.cmd(b"UNSELECT")
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Flagged)")
    c.store("3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    out = r.cmd(b"SELECT INBOX (QRESYNC (%d %d 1:4))" % (uidvalidity, highest))
    assert b"* VANISHED (EARLIER) 3" in out
    fetches = [x for x in out if b" FETCH " in x]
    assert len(fetches) == 1 and b"UID 2 " in fetches[0] and b"\\Flagged" in fetches[0]
    assert b"MODSEQ (" in fetches[0]
    out = r.cmd(b"SELECT Sent")
    assert out[0] == b"* OK [CLOSED] Previous mailbox closed"


def test_qresync_without_enable_is_bad(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"SELECT INBOX (QRESYNC (1 1))")[-1].startswith(b"t BAD")


def test_close_expunges_silently_unselect_does_not(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert r.cmd(b"UNSELECT") == [b"t OK UNSELECT completed"]
    r.cmd(b"SELECT INBOX")
    out = r.cmd(b"CLOSE")
    assert out == [b"t OK CLOSE completed"]
    assert b"* 2 EXISTS" in r.cmd(b"SELECT INBOX")


def test_select_and_status_see_files_other_programs_just_dropped(imap_server):
    """A `mailsuite deliver` run by the MTA is another process: SELECT and STATUS must show
    its message at once, not after some polling interval."""
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"STATUS INBOX (MESSAGES)")[0] == b"* STATUS INBOX (MESSAGES 0)"
    root = imap_server.services.store.path_for("alice@example.test")
    for i in range(2):
        (root / "new" / f"17000000{i}.P1Q{i}.other").write_bytes(b"Subject: x\n\nbody\n")
        out = r.cmd(b"STATUS INBOX (MESSAGES)")
        assert out[0] == b"* STATUS INBOX (MESSAGES %d)" % (i + 1)
        assert b"* %d EXISTS" % (i + 1) in r.cmd(b"SELECT INBOX")
