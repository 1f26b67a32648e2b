"""A command over many messages leaves the reactor to the other clients between its steps
(mailsuite.imap.turns), and what it does stays the same as if it ran in one go."""

from __future__ import annotations

import os
import time

import pytest

from mailsuite.imap import turns
from mailsuite.imap.commands import expunge, store
from mailsuite.imap.session import Session
from mailsuite.store.names import to_dirname
from tests.imap.conftest import USER, Raw, selected
from tests.session_lifetime import live_session

N = 10_000


@pytest.fixture
def every_step_yields(monkeypatch):
    """Small steps, each waiting for the next reactor turn: a client's command sent while
    another's runs finds it at one of many steps."""
    monkeypatch.setattr(turns, "TURN_SECONDS", 0.0)
    monkeypatch.setattr(store, "STEP", 64)
    monkeypatch.setattr(expunge, "STEP", 100)
    # A step no longer renames or unlinks (the durable pool does): each also lets go of the
    # GIL for a moment, as those system calls did, so that the test's client thread, which
    # shares the GIL with the server's reactor, gets to send its command before the last step.
    expunge_step, store_step = expunge._expunge_step, store._StoreRun.step
    monkeypatch.setattr(expunge, "_expunge_step", lambda *a: _pausing(expunge_step, *a))
    monkeypatch.setattr(store._StoreRun, "step", lambda *a: _pausing(store_step, *a))


def _pausing(step, *args) -> None:
    step(*args)
    time.sleep(0.001)


def fill(srv, n: int, deleted=lambda i: False, folder: str = "INBOX") -> None:
    """n messages written straight into a folder (as another program would), some \\Deleted."""
    base = srv.services.store.path_for(USER)
    if folder != "INBOX":
        base = base / to_dirname(folder)
    for i in range(1, n + 1):
        body = b"From: b@example.test\nSubject: m%d\nMessage-ID: <%d@example.test>\n\nhi\n" % (
            i,
            i,
        )
        name = f"{1_700_000_000 + i}.M{i}P1.test,S={len(body)}"
        where = f"{base}/cur/{name}:2,T" if deleted(i) else f"{base}/new/{name}"
        with open(where, "wb") as f:
            f.write(body)
    os.utime(f"{base}/new", (0, 0))  # a listing of the folder is owed


def fetch_lines(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if b" FETCH (" in x]


def test_store_over_many_messages_lets_another_session_in_between_steps(
    imap_server, every_step_yields
):
    fill(imap_server, N)
    a, b = selected(imap_server), selected(imap_server)
    a.send(b"s STORE 1:* +FLAGS (\\Flagged)\r\n")
    first = a.line()  # the STORE has begun: its first replies are out
    b.send(b"n NOOP\r\n")
    seen_by_b = fetch_lines(b.until_tagged(b"n"))
    rest = a.until_tagged(b"s")
    assert rest[-1] == b"s OK STORE completed"
    assert len(fetch_lines([first, *rest])) == N
    # B's NOOP ran while the STORE was under way: it was told of part of the changes only.
    assert len(seen_by_b) < N
    flagged = b.cmd(b"SEARCH FLAGGED", b"f")[0].split()[2:]
    assert len(flagged) == N


def test_expunge_of_many_messages_in_steps_numbers_each_line_right(imap_server, every_step_yields):
    fill(imap_server, N, deleted=lambda i: i % 3 != 0)
    a, b = selected(imap_server), selected(imap_server)
    uids = [int(x) for x in a.cmd(b"UID SEARCH ALL", b"u")[0].split()[2:]]
    deleted = set(int(x) for x in a.cmd(b"UID SEARCH DELETED", b"d")[0].split()[2:])
    a.send(b"e EXPUNGE\r\n")
    out = [a.line()]  # the EXPUNGE has begun
    b.send(b"n NOOP\r\n")
    told_b = [x for x in b.until_tagged(b"n") if x.endswith(b" EXPUNGE")]
    out += a.until_tagged(b"e")
    assert out[-1] == b"e OK EXPUNGE completed"
    # B's NOOP ran between two steps: it heard of part of the removals only.
    assert len(told_b) < len(deleted)
    # A client applying each EXPUNGE in order ends with exactly the messages kept.
    view = list(uids)
    for line in out[:-1]:
        assert line.endswith(b" EXPUNGE"), line
        del view[int(line.split()[1]) - 1]
    assert sorted(view) == sorted(set(uids) - deleted)
    assert [int(x) for x in a.cmd(b"UID SEARCH ALL", b"v")[0].split()[2:]] == view
    assert len(imap_server.message_files(USER)) == len(view)


def test_a_store_step_finds_messages_expunged_meanwhile_and_says_so(imap_server, every_step_yields):
    """Another session expunges the last messages while the STORE is at its first steps: the
    STORE never answers OK for a change it could not make (RFC 2180 §4.2)."""
    fill(imap_server, N, deleted=lambda i: i > N - 10)
    a, b = selected(imap_server), selected(imap_server)
    a.send(b"s STORE 1:* +FLAGS.SILENT (\\Seen)\r\n")
    out = b.cmd(b"EXPUNGE", b"e")
    assert out[-1] == b"e OK EXPUNGE completed"
    assert a.until_tagged(b"s")[-1].startswith(b"s NO [EXPUNGEISSUED]")
    unseen = a.cmd(b"SEARCH UNSEEN", b"u")[0].split()[2:]
    assert unseen == []  # every message still there got the flag


def test_move_of_many_messages_within_the_mailbox_keeps_expunge_before_exists(
    imap_server, every_step_yields
):
    fill(imap_server, 5000)
    a = selected(imap_server)
    out = a.cmd(b"MOVE 1:* INBOX", b"m")
    assert out[-1].startswith(b"m OK"), out[-1]
    expunges = [i for i, x in enumerate(out) if x.endswith(b" EXPUNGE")]
    exists = [i for i, x in enumerate(out) if x.endswith(b" EXISTS")]
    assert len(expunges) == 5000 and exists and max(expunges) < min(exists)
    assert out[exists[-1]] == b"* 5000 EXISTS"


def test_a_session_that_leaves_during_a_long_store_costs_nothing_more(
    imap_server, every_step_yields
):
    fill(imap_server, N)
    a = selected(imap_server)
    a.send(b"s STORE 1:* +FLAGS.SILENT (\\Answered)\r\n")
    a.close()
    b = Raw(imap_server.port("imap"))
    b.login()
    assert b.cmd(b"NOOP", b"n")[-1] == b"n OK NOOP completed"


def test_fetch_over_many_messages_leaves_turns_to_others(imap_server, every_step_yields):
    """The reactor runs other work between a big FETCH's batches: a call handed to it while
    the FETCH is under way runs while the FETCH is still busy."""
    fill(imap_server, N)
    a = selected(imap_server)
    session = live_session(
        Session, lambda s: s.services is imap_server.services and s.view is not None
    )
    a.send(b"f FETCH 1:* (ENVELOPE)\r\n")
    a.line()  # under way
    assert imap_server.call(lambda: session().busy)
    out = a.until_tagged(b"f")
    assert out[-1] == b"f OK FETCH completed"
    assert len(fetch_lines(out)) == N - 1


def test_the_first_select_of_a_big_folder_builds_its_index_off_the_reactor(imap_server):
    mailbox = imap_server.mailbox(USER)
    imap_server.call(mailbox.create_folder, "Big")
    fill(imap_server, N, folder="Big")
    assert not mailbox.is_loaded("Big")
    a = Raw(imap_server.port("imap"))
    a.login()
    session = live_session(Session, lambda s: s.services is imap_server.services and s.user == USER)
    a.send(b"s SELECT Big\r\n")
    # The reactor runs other work while the index is built: the SELECT is seen under way,
    # its folder not loaded yet.
    seen_loading = False
    for _ in range(400):
        if imap_server.call(lambda: session().busy and not mailbox.is_loaded("Big")):
            seen_loading = True
            break
    out = a.until_tagged(b"s")
    assert out[-1] == b"s OK [READ-WRITE] SELECT completed"
    assert b"* %d EXISTS" % N in out
    assert seen_loading


def test_a_client_gone_while_its_big_folder_loads_leaves_no_view_behind(imap_server):
    mailbox = imap_server.mailbox(USER)
    imap_server.call(mailbox.create_folder, "Big")
    fill(imap_server, N, folder="Big")
    a = Raw(imap_server.port("imap"))
    a.login()
    a.send(b"s SELECT Big\r\n")
    a.close()
    deadline = time.monotonic() + 30
    while not mailbox.is_loaded("Big") and time.monotonic() < deadline:
        time.sleep(0.05)
    folder = imap_server.call(mailbox.folder, "Big")
    time.sleep(0.2)  # the load's callback has run on the reactor
    assert imap_server.call(lambda: len(folder._listeners)) == 1  # the Mailbox's own
