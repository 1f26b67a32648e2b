"""What one hostile ManageSieve client can make the server do: a bounded number of commands
per reactor turn, no replies produced while the client reads none, and nothing of a connection
left in memory once it is gone."""

from __future__ import annotations

import gc
import time

from mailsuite.line_session import COMMANDS_PER_TURN
from mailsuite.managesieve.server import ManageSieveProtocol
from mailsuite.managesieve.session import ManageSieveSession
from tests.managesieve.conftest import ALICE, LISTENERS, RawSieve, logged_in, plain_auth
from tests.session_lifetime import drop_and_wait_freed, live_session


class Conn:
    """A SieveConnection that keeps what is written."""

    def __init__(self):
        self.written: list[list[bytes]] = []

    def write(self, parts):
        self.written.append(parts)

    def close(self):
        pass

    def is_secure(self):
        return True

    def start_tls(self):
        pass

    def processed(self):
        pass

    def logged_out(self):
        pass


def test_pipelined_commands_run_a_bounded_number_per_turn(sieve_server):
    conn = Conn()
    session = ManageSieveSession(sieve_server.services, "managesieve", conn)
    session.connected("192.0.2.9")
    sieve_server.call(session.greet)
    conn.written.clear()
    sieve_server.call(session.feed, b"NOOP\r\n" * 1000)
    assert len(conn.written) == COMMANDS_PER_TURN and session.yielded
    sieve_server.call(session.pump)  # the next turn
    assert len(conn.written) == 2 * COMMANDS_PER_TURN


def test_a_client_that_reads_nothing_stops_getting_replies(sieve_server, raw, alice):
    c = logged_in(raw, alice)
    script = b"# " + b"x" * 60_000 + b"\r\nkeep;\r\n"
    assert c.final(b'PUTSCRIPT "big" {%d+}\r\n' % len(script) + script).startswith(b"OK")
    count = 400  # 24 MB of replies
    c.send(b'GETSCRIPT "big"\r\n' * count)
    time.sleep(1.0)

    def state():
        (proto,) = [
            o
            for o in gc.get_objects()
            if isinstance(o, ManageSieveProtocol)
            and o.services is sieve_server.services
            and not o.session.lost
        ]
        return proto.session.output_blocked, proto.session.busy

    blocked, _ = sieve_server.call(state)
    assert blocked
    # Every reply still comes, in order, once the client reads.
    for _ in range(count):
        lines = c.response()
        assert lines[-1] == b'OK "Getscript completed."'
        assert lines[0].endswith(b"keep;\r\n")


def test_session_is_freed_at_once_when_the_connection_goes(server_factory):
    srv = server_factory(listen=LISTENERS, auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    gc.collect()
    gc.disable()
    try:
        # In clear: after STARTTLS, Twisted's TLS layer and the transport refer to each other
        # (as for every protocol's STARTTLS), which only the collector undoes.
        c = RawSieve(srv.port("managesieve"))
        assert c.final(plain_auth(ALICE)) == b'OK "Logged in."'
        c.send(b'PUTSCRIPT "half" {100+}\r\nkeep;')  # a literal half-read
        time.sleep(0.2)
        ref = live_session(
            ManageSieveSession,
            lambda s: s.services is srv.services and not s.lost,
        )
        drop_and_wait_freed(c.sock, ref)
    finally:
        gc.enable()
