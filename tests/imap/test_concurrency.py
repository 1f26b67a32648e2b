"""Several sessions on one mailbox (Thunderbird opens several): each keeps its own sequence
numbers and hears of the others' changes at the points RFC 3501 §5.2 and §7.4.1 allow."""

from tests.imap.conftest import append_n, connect, message, selected


def test_three_sessions_see_appends_flags_and_expunges(imap_server):
    append_n(connect(imap_server), 2)
    a, b, c = (selected(imap_server) for _ in range(3))
    # A appends: B and C learn at their next command, with EXISTS before the tagged reply.
    # One call: message() stamps the time into Message-ID, whose length varies between calls.
    third = message(3)
    a.send(b"x APPEND INBOX {%d+}\r\n" % len(third) + third + b"\r\n")
    out = a.until_tagged(b"x")
    assert out[0] == b"* 3 EXISTS" and out[-1].startswith(b"x OK [APPENDUID ")
    out = b.cmd(b"NOOP")
    assert b"* 3 EXISTS" in out
    # B flags message 1; C sees an untagged FETCH even during its own FETCH.
    b.cmd(b"STORE 1 +FLAGS.SILENT (\\Answered)")
    out = c.cmd(b"FETCH 2 (UID)")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Answered))" in out
    assert b"* 3 EXISTS" in out
    # C expunges message 2; A hears at NOOP, B not during SEARCH but at the next NOOP.
    c.cmd(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert c.cmd(b"EXPUNGE")[0] == b"* 2 EXPUNGE"
    assert b"* 2 EXPUNGE" in a.cmd(b"NOOP")
    out = b.cmd(b"SEARCH ALL")
    assert not any(x.endswith(b" EXPUNGE") for x in out)
    assert b"* 2 EXPUNGE" in b.cmd(b"NOOP")
    for s in (a, b, c):
        assert s.cmd(b"FETCH 1:* (UID)")[:2] == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)"]


def test_uid_commands_may_carry_expunges(imap_server):
    append_n(connect(imap_server), 3)
    a, b = selected(imap_server), selected(imap_server)
    a.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.cmd(b"EXPUNGE")
    out = b.cmd(b"UID FETCH 1:* (FLAGS)")
    assert out[-2] == b"* 1 EXPUNGE"


def test_pop3_deletion_reaches_imapselected(full_server):
    imap_server = full_server
    import poplib

    append_n(connect(imap_server), 2)
    a = selected(imap_server)
    p = poplib.POP3("127.0.0.1", imap_server.port("pop3"), timeout=10)
    p.user("alice@example.test")
    from tests.conftest import DEFAULT_PASSWORD

    p.pass_(DEFAULT_PASSWORD)
    p.dele(1)
    p.quit()
    assert b"* 1 EXPUNGE" in a.cmd(b"NOOP")
