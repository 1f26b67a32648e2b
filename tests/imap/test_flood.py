"""What one hostile IMAP client can make the server do: a bounded number of commands per
reactor turn, small literals before authentication, no reply piled up for a client that does
not read, and nothing of a connection left in memory once it is gone."""

from __future__ import annotations

import gc
import time

from mailsuite.imap.session import COMMANDS_PER_TURN, Session
from tests.imap.conftest import Raw
from tests.imap.session_machine import make_services, open_session
from tests.session_lifetime import drop_and_wait_freed, live_session


def test_pipelined_commands_run_a_bounded_number_per_turn(tmp_path):
    session, conn = open_session(make_services(tmp_path, with_tls=False))
    conn.processed = lambda: None  # no later reactor turn comes in this test
    session.receive(b"".join(b"n%d NOOP\r\n" % i for i in range(1000)))
    assert len(conn.take()) == COMMANDS_PER_TURN and session.yielded
    session.pump()  # the next turn
    assert conn.take()[0] == b"n%d OK NOOP completed" % COMMANDS_PER_TURN


def test_pipelined_idle_and_done_count_against_the_same_turn(tmp_path):
    # DONE finishes IDLE from inside the running turn: that must not start a fresh turn
    # (and a deeper call) for what follows, or IDLE/DONE pairs are never yielded on.
    session, conn = open_session(make_services(tmp_path, with_tls=False))
    session.logged_in("alice@example.test")
    conn.processed = lambda: None  # no later reactor turn comes in this test
    session.receive(b"i IDLE\r\nDONE\r\n" * 1000)
    done = [line for line in conn.take() if line == b"i OK IDLE completed"]
    assert len(done) == COMMANDS_PER_TURN // 2 and session.yielded
    session.pump()  # the next turn
    done = [line for line in conn.take() if line == b"i OK IDLE completed"]
    assert len(done) == COMMANDS_PER_TURN // 2


def test_literal_before_login_is_refused_at_once_without_continuation(imap_server):
    r = Raw(imap_server.port("imap"))
    r.send(b"a LOGIN {66000000}\r\n")
    line = r.line()
    assert line.startswith(b"a NO [TOOBIG]"), line
    # The stream stays in step: the next command is answered.
    assert r.cmd(b"NOOP", b"b")[-1] == b"b OK NOOP completed"
    # A literal of a few bytes (LOGIN's password) is fine.
    r.send(b"c LOGIN alice@example.test {15}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"secret-Passw0rd\r\n")
    assert r.until_tagged(b"c")[-1].startswith(b"c OK")
    # Once authenticated the configured limits apply again.
    r.send(b"d APPEND INBOX {20000}\r\n")
    assert r.line().startswith(b"+ ")
    r.close()


def test_session_is_freed_at_once_when_the_connection_goes(imap_server):
    """Protocol, session and selected view refer to each other: without the references
    dropped on connection loss, each closed connection's buffers wait for the collector."""
    gc.collect()
    gc.disable()
    try:
        for tls in (False, True):
            port = imap_server.port("imaps" if tls else "imap")
            r = Raw(port, tls=tls)
            if not tls:
                r.login()
                r.cmd(b"SELECT INBOX")
            r.send(b"x LOGIN {5}\r\n")  # a literal half-read
            r.line()
            r.send(b"ab")
            time.sleep(0.2)
            ref = live_session(
                Session, lambda s: s.services is imap_server.services and not s.protocol.closed
            )
            drop_and_wait_freed(r.sock, ref)
    finally:
        gc.enable()
