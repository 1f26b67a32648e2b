"""POP3 opens a maildrop whose INBOX is not in memory yet without the reactor listing it or
writing its uidlist: the first load runs in the durable pool; RETR's \\Seen renames and QUIT's
removals run there too."""

from __future__ import annotations

import os
import poplib
import time

from tests.conftest import DEFAULT_PASSWORD
from tests.reactor_disk import ReactorDiskWatch, reactor_thread

ALICE = "alice@example.test"
MSG = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def test_login_loads_a_cold_inbox_in_the_durable_pool(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    mbox = srv.mailbox(ALICE)
    for _ in range(3):
        mbox.deliver(MSG)
    past = time.time() - 60  # nobody touched it lately: its mtimes prove it unchanged
    for sub in ("cur", "new", "tmp"):
        os.utime(mbox.path / sub, (past, past))
    assert not srv.call(mbox.is_loaded, "INBOX")
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
        p.user(ALICE)
        p.pass_(DEFAULT_PASSWORD)
        count, _ = p.stat()
        listing = p.list()[1]
        uidl = p.uidl()[1]
    p.quit()
    assert count == 3 and len(listing) == 3 and len(uidl) == 3
    assert srv.call(mbox.is_loaded, "INBOX")
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))


def test_pop3_retr_dele_quit_leave_the_files_to_the_durable_pool(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    mbox = srv.mailbox(ALICE)
    for _ in range(4):
        mbox.deliver(MSG)
    past = time.time() - 60
    for sub in ("cur", "new", "tmp"):
        os.utime(mbox.path / sub, (past, past))
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
        p.user(ALICE)
        p.pass_(DEFAULT_PASSWORD)
        p.retr(1)
        p.dele(2)
        p.dele(3)
        reply = p.quit()
        # RFC 1939 §6: +OK from UPDATE once the marked messages are removed.
        after_quit = sorted(
            n.partition(":2,")[2] for sub in ("new", "cur") for n in os.listdir(mbox.path / sub)
        )
    assert reply.startswith(b"+OK")
    assert after_quit == ["", "S"]
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
