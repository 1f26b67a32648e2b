"""`mailsuite junk ...` run as the real admin command against a running server's files."""

from __future__ import annotations

from mailsuite.junk.model import ALLOW, BLOCK
from tests.junk.conftest import USER, header, imap_login, model, send, stored_copy, wait_for
from tests.junk.corpus import corpus


def test_user_block_list_files_a_sender_in_junk_and_allow_takes_it_back(junk_server):
    r = junk_server.cli("junk", "block", "@deals.example", "--user", USER)
    assert r.returncode == 0, r.stderr
    send(junk_server, corpus("ham", 1)[0], sender="promo@deals.example")
    (stored,) = junk_server.messages(USER, "Junk")
    assert b"block list deals.example" in header(stored, b"X-Spam-Reason")
    assert header(stored, b"X-Spam-Status").startswith(b"Yes")
    r = junk_server.cli("junk", "allow", "promo@deals.example", "--user", USER)
    assert r.returncode == 0, r.stderr
    # An address entry and a domain entry: block wins over allow, so unlist the domain.
    assert junk_server.cli("junk", "unlist", "deals.example", "--user", USER).returncode == 0
    raw = corpus("ham", 2)[1]
    send(junk_server, raw, sender="promo@deals.example")
    stored = stored_copy(junk_server, raw)
    assert b"allow list promo@deals.example" in header(stored, b"X-Spam-Reason")
    assert model(junk_server).listed() == [("promo@deals.example", ALLOW)]


def test_server_wide_block_list_applies_to_every_user(junk_server):
    junk_server.add_user("bob@example.test")
    r = junk_server.cli("junk", "block", "spam.example")
    assert r.returncode == 0, r.stderr
    assert junk_server.cli("junk", "lists").stdout.decode() == f"{BLOCK}\tspam.example\n"
    send(junk_server, corpus("ham", 1)[0], sender="x@mail.spam.example", rcpt="bob@example.test")
    assert len(junk_server.messages("bob@example.test", "Junk")) == 1


def test_stats_and_retrain_rebuild_from_junk_and_inbox(junk_server):
    for raw in corpus("junk", 12) + corpus("ham", 15):
        send(junk_server, raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    c.uid("MOVE", "1:12", "Junk")
    c.logout()
    data = model(junk_server)
    assert wait_for(lambda: data.totals() == (12, 0))
    r = junk_server.cli("junk", "retrain", "--user", USER)
    assert r.returncode == 0, r.stderr
    assert b"learned 12 junk and 15 legitimate" in r.stdout
    assert data.totals() == (12, 15)
    r = junk_server.cli("junk", "stats", "--user", USER)
    out = r.stdout.decode()
    assert "learned: 12 junk, 15 not junk" in out
    assert "junk words:" in out


def test_unknown_user_and_bad_entry_are_refused(junk_server):
    r = junk_server.cli("junk", "stats", "--user", "nobody@example.test")
    assert r.returncode == 1 and b"no such user" in r.stderr
    r = junk_server.cli("junk", "block", "notadomain")
    assert r.returncode == 1
