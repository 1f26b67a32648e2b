"""What one hostile SMTP client can make the server do: a bounded number of commands per
reactor turn, and nothing of a connection left in memory once it is gone."""

from __future__ import annotations

import gc
import time

from mailsuite.smtp.session import COMMANDS_PER_TURN, SmtpSession
from tests.conftest import on_reactor
from tests.session_lifetime import drop_and_wait_freed, live_session
from tests.smtp.test_state_machine import start


def test_pipelined_commands_run_a_bounded_number_per_turn(server):
    session, conn = start(server.services)
    on_reactor(session.feed, b"EHLO client.test\r\n" + b"NOOP\r\n" * 1000)
    assert len(conn.replies()) == 1 + COMMANDS_PER_TURN and session.yielded
    on_reactor(session.process)  # the next turn
    assert len(conn.replies()) == 1 + 2 * COMMANDS_PER_TURN


def test_session_is_freed_at_once_when_the_connection_goes(server, wire):
    gc.collect()
    gc.disable()
    try:
        for kind, tls in (("smtp", False), ("submissions", True)):
            w = wire(kind, tls=tls)
            assert w.cmd("EHLO client.test")[0] == 250
            w.send("MAIL FROM:<a@remote.test>\r\nRCPT TO:<x")  # a line half-read
            w.reply()  # 250, or 530 on submissions before AUTH
            time.sleep(0.2)
            ref = live_session(
                SmtpSession, lambda s: s.services is server.services and s.mode != "closed"
            )
            drop_and_wait_freed(w.sock, ref)
    finally:
        gc.enable()
