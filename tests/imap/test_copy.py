"""COPY/UID COPY with COPYUID (RFC 3501 §6.4.7, RFC 4315 §3) and MOVE/UID MOVE (RFC 6851)."""

from mailsuite.store.folder import Folder
from tests.imap.conftest import Raw, append_n, connect, selected


def _setup(srv, n=4):
    append_n(connect(srv), n)
    return selected(srv)


def test_copy_returns_copyuid_and_keeps_flags(imap_server):
    r = _setup(imap_server)
    r.cmd(b"STORE 2 +FLAGS (\\Flagged)")
    out = r.cmd(b"COPY 2:3 Archive")
    assert out[-1].startswith(b"t OK [COPYUID ")
    _, _, _, uidvalidity, src, dst = out[-1].split(b"]")[0].split(b" ")
    assert src == b"2:3" and dst == b"1:2"
    r.cmd(b"SELECT Archive")
    out = r.cmd(b"UID FETCH 1:* (FLAGS)")
    assert b"\\Flagged" in out[0] and b"\\Flagged" not in out[1]


def test_copy_to_missing_mailbox_is_trycreate(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"COPY 1 Nope")[-1].startswith(b"t NO [TRYCREATE]")
    assert r.cmd(b"MOVE 1 Nope")[-1].startswith(b"t NO [TRYCREATE]")


def test_move_sends_copyuid_then_expunges_rfc6851(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"MOVE 2:3 Trash")
    assert out[0].startswith(b"* OK [COPYUID ") and b" 2:3 1:2]" in out[0]
    assert out[1:3] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert out[-1] == b"t OK MOVE completed"
    out = r.cmd(b"UID MOVE 4 Trash")
    assert out[1] == b"* 2 EXPUNGE"
    assert r.cmd(b"STATUS Trash (MESSAGES)")[0] == b"* STATUS Trash (MESSAGES 3)"
    assert r.cmd(b"STATUS INBOX (MESSAGES)")[0] == b"* STATUS INBOX (MESSAGES 1)"


def test_move_with_qresync_reports_vanished(imap_server):
    r = _setup(imap_server)
    r.cmd(b"ENABLE QRESYNC")
    out = r.cmd(b"UID MOVE 1:2 Junk")
    assert b"* VANISHED 1:2" in out


def test_other_session_sees_moved_messages_expunged(imap_server):
    r = _setup(imap_server)
    other = Raw(imap_server.port("imap"))
    other.login()
    other.cmd(b"SELECT INBOX")
    r.cmd(b"MOVE 1 Trash")
    out = other.cmd(b"NOOP")
    assert b"* 1 EXPUNGE" in out
    assert other.cmd(b"FETCH 1:* UID")[0] == b"* 1 FETCH (UID 2)"


def test_copies_are_indexed_from_what_the_copy_knows_without_a_look_at_each_file(
    imap_server, monkeypatch
):
    """A COPY of many messages would otherwise stat each new file on the reactor (0.3 s for
    20,000); the copies keep their sizes and internal dates."""
    r = _setup(imap_server, 30)
    r.cmd(b"STATUS Archive (MESSAGES)")  # the folder is loaded before the COPY
    dates = [x.split(b'INTERNALDATE "')[1][:26] for x in r.cmd(b"FETCH 1:* (INTERNALDATE)")[:-1]]
    looked = []
    original = Folder._file_facts

    def counting(self, key, path):
        looked.append(key)
        return original(self, key, path)

    monkeypatch.setattr(Folder, "_file_facts", counting)
    out = r.cmd(b"COPY 1:* Archive")
    assert out[-1].startswith(b"t OK [COPYUID ")
    assert looked == []
    r.cmd(b"SELECT Archive")
    got = r.cmd(b"FETCH 1:* (INTERNALDATE RFC822.SIZE)")
    assert [x.split(b'INTERNALDATE "')[1][:26] for x in got[:-1]] == dates
    assert len(got) == 31 and got[-1].startswith(b"t OK")
