"""Read mail left in INBOX for a few days is learned as not junk by the periodic pass."""

from __future__ import annotations

import time

from twisted.internet import defer

from mailsuite.junk.model import HAM, JUNK, message_identity
from mailsuite.junk.read_mail import ReadMailLearner
from tests.junk.conftest import imap_login, model, send, wait_for
from tests.junk.corpus import corpus


def test_old_read_inbox_mail_is_learned_as_not_junk_once(junk_server):
    read, unread, flagged = corpus("ham", 3, seed=21)
    for raw in (read, unread, flagged):
        send(junk_server, raw)
    c = imap_login(junk_server)
    c.select("INBOX")
    c.uid("FETCH", "1", "(BODY[])")  # sets \Seen
    c.uid("STORE", "3", "+FLAGS", r"(\Seen $Junk)")
    data = model(junk_server)
    assert wait_for(lambda: data.learned_as(message_identity(flagged)) == JUNK)

    def run(learner):
        return defer.gatherResults(learner.run() or [])

    now = ReadMailLearner(junk_server.services.junk)
    assert junk_server.call(run, now) == []  # nothing is old enough yet
    later = ReadMailLearner(junk_server.services.junk, clock=lambda: time.time() + 4 * 86400)
    assert junk_server.call(run, later) == [1]
    assert data.learned_as(message_identity(read)) == HAM
    assert data.learned_as(message_identity(unread)) is None
    assert data.learned_as(message_identity(flagged)) == JUNK  # the user's word stands
    assert junk_server.call(run, later) == []  # looked at once
    c.logout()
