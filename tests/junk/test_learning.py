"""The filter learns from the user's own IMAP actions and files new mail by what it learned.

Real SMTP deliveries, real IMAP MOVE/COPY/STORE through imaplib, the server's own filter file.
"""

from __future__ import annotations

import smtplib

import pytest

from mailsuite.junk.model import HAM, JUNK, message_identity
from tests.junk.conftest import USER, header, imap_login, model, send, stored_copy, wait_for
from tests.junk.corpus import corpus

TRAIN = 50
HELD_OUT = 30


def _train(srv):
    """Deliver 50 junk + 50 legitimate messages, then: junk MOVEd to Junk, legitimate ones
    flagged $NotJunk (as a client's "not junk" button does)."""
    for raw in corpus("junk", TRAIN) + corpus("ham", TRAIN):
        send(srv, raw)
    c = imap_login(srv)
    c.select("INBOX")
    c.uid("MOVE", f"1:{TRAIN}", "Junk")
    c.uid("STORE", f"{TRAIN + 1}:{2 * TRAIN}", "+FLAGS", "($NotJunk)")
    c.logout()
    data = model(srv)
    assert wait_for(lambda: data.totals() == (TRAIN, TRAIN)), data.totals()


def test_untrained_filter_is_neutral_and_marks_every_message(junk_server):
    send(junk_server, corpus("junk", 1)[0])
    (stored,) = junk_server.messages(USER)
    assert header(stored, b"X-Spam-Status").startswith(b"No, score=0.0")
    assert header(stored, b"X-Spam-Score") == b"0.0"
    assert b"untrained" in header(stored, b"X-Spam-Reason")
    assert junk_server.messages(USER, "Junk") == []


def test_forged_spam_headers_are_replaced(junk_server):
    forged = b"X-Spam-Status: No, score=-100\r\nX-Spam-Reason: trust me\r\n" + corpus("ham", 1)[0]
    send(junk_server, forged)
    (stored,) = junk_server.messages(USER)
    assert stored.count(b"X-Spam-Status:") == 1
    assert b"trust me" not in stored


def test_trained_on_imap_moves_files_held_out_mail_at_the_stated_rate(junk_server):
    """After 50 + 50 lessons: at least 90 % of held-out junk goes to Junk and no held-out
    legitimate message does."""
    _train(junk_server)
    in_junk = len(junk_server.messages(USER, "Junk"))
    held_junk = corpus("junk", HELD_OUT, seed=1)
    for raw in held_junk:
        send(junk_server, raw)
    caught = len(junk_server.messages(USER, "Junk")) - in_junk
    held_ham = corpus("ham", HELD_OUT, seed=1)
    for raw in held_ham:
        send(junk_server, raw)
    misfiled = len(junk_server.messages(USER, "Junk")) - in_junk - caught
    assert caught >= 0.9 * HELD_OUT, caught
    assert misfiled == 0
    filed = next(m for m in map(lambda r: stored_copy(junk_server, r, "Junk"), held_junk) if m)
    assert header(filed, b"X-Spam-Status").startswith(b"Yes, score=")
    assert b"words 1.00" in header(filed, b"X-Spam-Reason")
    legit = stored_copy(junk_server, held_ham[0])
    assert header(legit, b"X-Spam-Status").startswith(b"No, score=-")


def test_moving_out_of_junk_unlearns_junk_and_learns_not_junk(junk_server):
    raw = corpus("junk", 1, seed=3)[0]
    send(junk_server, raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    c.uid("COPY", "1", "Junk")
    data = model(junk_server)
    identity = message_identity(raw)
    assert wait_for(lambda: data.learned_as(identity) == JUNK)
    c.select("Junk")
    c.uid("MOVE", "1", "Archive")
    assert wait_for(lambda: data.learned_as(identity) == HAM)
    assert data.totals() == (0, 1)
    c.logout()


def test_deleting_junk_into_trash_teaches_nothing(junk_server):
    raw = corpus("junk", 1, seed=4)[0]
    send(junk_server, raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    c.uid("MOVE", "1", "Junk")
    data = model(junk_server)
    identity = message_identity(raw)
    assert wait_for(lambda: data.learned_as(identity) == JUNK)
    c.select("Junk")
    c.uid("MOVE", "1", "Trash")
    c.noop()
    assert data.learned_as(identity) == JUNK
    c.logout()


def test_junk_keyword_teaches_junk(junk_server):
    raw = corpus("junk", 1, seed=5)[0]
    send(junk_server, raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    typ, _ = c.uid("STORE", "1", "+FLAGS.SILENT", "($Junk)")
    assert typ == "OK"
    data = model(junk_server)
    assert wait_for(lambda: data.learned_as(message_identity(raw)) == JUNK)
    c.logout()


@pytest.fixture
def refusing_server(server_factory):
    """Mail from 127.0.0.1 counts as from outside (no skip networks), a low refusal mark."""
    srv = server_factory(
        auth={"plaintext": "loopback"},
        trust={"skip_networks": [], "inbound_checks": False},
        junk={"junk_score": 3.0, "reject_score": 5.5},
    )
    srv.add_user(USER)
    return srv


def test_junk_above_the_high_mark_is_refused_at_data_with_550(refusing_server):
    _train(refusing_server)
    before = len(refusing_server.messages(USER)) + len(refusing_server.messages(USER, "Junk"))
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(refusing_server, corpus("junk", 1, seed=9)[0])
    assert err.value.smtp_code == 550
    assert b"5.7.1" in err.value.smtp_error
    assert b"words" in err.value.smtp_error
    after = len(refusing_server.messages(USER)) + len(refusing_server.messages(USER, "Junk"))
    assert after == before
    send(refusing_server, corpus("ham", 1, seed=9)[0])  # legitimate mail still gets in


def test_people_the_user_wrote_to_are_never_filed_as_junk(junk_server):
    _train(junk_server)
    c = imap_login(junk_server)
    c.logout()
    with smtplib.SMTP("127.0.0.1", junk_server.port("submission"), timeout=10) as s:
        s.login(USER, "secret-Passw0rd")
        s.sendmail(
            USER,
            ["promo@deals.example"],
            b"From: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n",
        )
    data = model(junk_server)
    assert data.known_correspondent(["promo@deals.example"])
    raw = corpus("junk", 1, seed=11)[0]
    send(junk_server, raw, sender="promo@deals.example")
    stored = stored_copy(junk_server, raw)
    assert b"known correspondent promo@deals.example" in header(stored, b"X-Spam-Reason")
    assert header(stored, b"X-Spam-Status").startswith(b"No")


def test_recipients_of_mail_appended_to_sent_become_correspondents(junk_server):
    c = imap_login(junk_server)
    msg = b"From: alice@example.test\r\nTo: Zed <zed@far.example>\r\nCc: yan@far.example\r\nSubject: x\r\n\r\nhi\r\n"
    typ, _ = c.append("Sent", None, None, msg)
    assert typ == "OK"
    c.append("Drafts", None, None, msg.replace(b"zed@", b"wen@"))
    data = model(junk_server)
    assert wait_for(lambda: data.known_correspondent(["yan@far.example"]))
    assert data.known_correspondent(["zed@far.example"])
    assert not data.known_correspondent(["wen@far.example"])
    c.logout()


def test_thunderbird_keywords_teach_too(junk_server):
    junk_raw, ham_raw = corpus("junk", 1, seed=41)[0], corpus("ham", 1, seed=41)[0]
    send(junk_server, junk_raw)
    send(junk_server, ham_raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    for raw, keyword in ((junk_raw, "(Junk)"), (ham_raw, "(NonJunk)")):
        msgid = header(raw.replace(b"\r\n", b"\n"), b"Message-ID").decode()
        typ, found = c.uid("SEARCH", "HEADER", "Message-ID", f'"{msgid}"')
        c.uid("STORE", found[0].decode(), "+FLAGS", keyword)
    data = model(junk_server)
    assert wait_for(lambda: data.learned_as(message_identity(junk_raw)) == JUNK)
    assert wait_for(lambda: data.learned_as(message_identity(ham_raw)) == HAM)
    c.logout()
