"""What one hostile POP3 client can make the server do: a bounded number of commands per
reactor turn, and nothing of a connection left in memory once it is gone."""

from __future__ import annotations

import gc
import time

from mailsuite.line_session import COMMANDS_PER_TURN
from mailsuite.pop3.session import Pop3Session
from tests.conftest import DEFAULT_PASSWORD
from tests.pop3.test_pop3_server import ALICE, raw_pop3s
from tests.pop3.test_pop3_state_machine import start
from tests.session_lifetime import drop_and_wait_freed, live_session


def test_pipelined_commands_run_a_bounded_number_per_turn(mail_server):
    session, conn = start(mail_server)
    conn.written.clear()
    mail_server.call(session.feed, b"CAPA\r\n" * 1000)
    assert len(conn.written) == COMMANDS_PER_TURN and session.yielded
    mail_server.call(session.pump)  # the next turn
    assert len(conn.written) == 2 * COMMANDS_PER_TURN


def test_session_is_freed_at_once_when_the_connection_goes(mail_server, tls_context):
    gc.collect()
    gc.disable()
    try:
        c = raw_pop3s(mail_server, tls_context)
        c.line()
        c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nSTAT\r\nLIST 1".encode())
        for _ in range(3):
            assert c.line().startswith(b"+OK")
        time.sleep(0.2)
        ref = live_session(Pop3Session, lambda s: s.services is mail_server.services and not s.lost)
        drop_and_wait_freed(c.sock, ref)
    finally:
        gc.enable()
