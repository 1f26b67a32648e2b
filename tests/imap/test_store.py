"""STORE (RFC 3501 §6.4.6): FLAGS/+FLAGS/-FLAGS, .SILENT, keywords, UID STORE, and
CONDSTORE UNCHANGEDSINCE with MODIFIED (RFC 7162 §3.1.3)."""

from tests.imap.conftest import Raw, append_n, connect


def _setup(srv, n=3):
    append_n(connect(srv), n)
    r = Raw(srv.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    return r


def test_store_modes_and_silent(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"STORE 1:2 +FLAGS (\\Seen \\Flagged)")
    assert out[:2] == [
        b"* 1 FETCH (FLAGS (\\Seen \\Flagged \\Recent))",
        b"* 2 FETCH (FLAGS (\\Seen \\Flagged \\Recent))",
    ]
    assert r.cmd(b"STORE 1 -FLAGS.SILENT (\\Flagged)") == [b"t OK STORE completed"]
    out = r.cmd(b"STORE 2 FLAGS ($Work)")
    # RFC 3501 §7.2.6: a keyword new to the mailbox is announced before the FETCH showing it
    assert out[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"
    assert out[1].startswith(b"* OK [PERMANENTFLAGS (") and b"$Work \\*)]" in out[1]
    assert out[2] == b"* 2 FETCH (FLAGS (\\Recent $Work))"
    out = r.cmd(b"UID STORE 3 +FLAGS \\Answered")
    assert out[0] == b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Recent))"
    out = r.cmd(b"FETCH 1:3 FLAGS")
    assert out[0] == b"* 1 FETCH (FLAGS (\\Seen \\Recent))"


def test_store_bad_arguments(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"STORE 1 +FLAGS (\\Bogus)")[-1].startswith(b"t BAD")
    assert r.cmd(b"STORE 9 +FLAGS (\\Seen)")[-1].startswith(b"t BAD")
    assert r.cmd(b"STORE 1 FROB (\\Seen)")[-1].startswith(b"t BAD")
    assert r.cmd(b"UID STORE 99 +FLAGS (\\Seen)")[-1].startswith(b"t OK")


def test_flags_persist_in_maildir_names(imap_server):
    r = _setup(imap_server, 1)
    r.cmd(b"STORE 1 +FLAGS (\\Seen \\Answered \\Flagged \\Draft)")
    (path,) = imap_server.message_files("alice@example.test")
    assert path.name.endswith(":2,DFRS")


def test_unchangedsince_reports_modified_rfc7162(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"FETCH 1:3 (MODSEQ)")
    assert out[0].startswith(b"* OK [HIGHESTMODSEQ "), out  # RFC 7162 §3.1: first enabling
    modseqs = [int(line.split(b"MODSEQ (")[1].split(b")")[0]) for line in out[1:-1]]
    other = connect(imap_server)
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Flagged)")
    out = r.cmd(b"STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % max(modseqs))
    assert out[-1].startswith(b"t OK [MODIFIED 2]"), out
    fetches = [line for line in out if b" FETCH " in line and b"\\Seen" in line]
    assert len(fetches) == 2 and all(b"MODSEQ (" in f for f in fetches)
    out = r.cmd(b"UID STORE 1:3 (UNCHANGEDSINCE 1) FLAGS.SILENT ()")
    assert out[-1].startswith(b"t OK [MODIFIED 1:3]")


def test_condstore_fetch_changedsince(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"FETCH 1:* (UID) (CHANGEDSINCE 1)")
    base = [x for x in out if b" FETCH (" in x]
    assert len(base) == 3 and all(b"MODSEQ" in x for x in base)
    highest = max(int(x.split(b"MODSEQ (")[1].split(b")")[0]) for x in base)
    r.cmd(b"STORE 3 +FLAGS.SILENT (\\Seen)")
    out = r.cmd(b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % highest)
    fetches = [x for x in out if b" FETCH (" in x]
    assert len(fetches) == 1 and b"UID 3" in fetches[0]
