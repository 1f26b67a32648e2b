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


def _login(srv) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    return p


def _alice(server_factory, messages: int):
    """A server, and Alice's mailbox with `messages` in INBOX that nobody touched lately (its
    mtimes prove it unchanged)."""
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    mbox = srv.mailbox(ALICE)
    for _ in range(messages):
        mbox.deliver(MSG)
    past = time.time() - 60
    for sub in ("cur", "new", "tmp"):
        os.utime(mbox.path / sub, (past, past))
    return srv, mbox


def test_login_loads_a_cold_inbox_in_the_durable_pool(server_factory):
    srv, mbox = _alice(server_factory, 3)
    assert not srv.call(mbox.is_loaded, "INBOX")
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        p = _login(srv)
        count, _ = p.stat()
        listing = p.list()[1]
        uidl = p.uidl()[1]
    p.quit()
    assert count == 3 and len(listing) == 3 and len(uidl) == 3
    assert srv.call(mbox.is_loaded, "INBOX")
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))


def test_pop3_retr_dele_quit_leave_the_files_to_the_durable_pool(server_factory):
    srv, mbox = _alice(server_factory, 4)
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        p = _login(srv)
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


def test_login_lists_a_changed_inbox_in_the_durable_pool(server_factory):
    """INBOX already in memory, then another program delivers into it: the next login sees
    that message (RFC 1939 §4) and the listing that finds it is made off the reactor."""
    srv, mbox = _alice(server_factory, 1)
    p = _login(srv)
    assert p.stat()[0] == 1
    p.quit()
    assert srv.call(mbox.is_loaded, "INBOX")
    # Another program's delivery: a file in new/ the index has not seen.
    (mbox.path / "new" / "1700000000.M1P1Q1.elsewhere").write_bytes(MSG)
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        p = _login(srv)
        count, _ = p.stat()
        uidl = p.uidl()[1]
    p.quit()
    assert count == 2 and len(uidl) == 2
    listed = [e for e in events if "listdir" in str(e) or "scandir" in str(e)]
    assert not listed, "listing on the reactor:\n" + "\n".join(map(str, listed))
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
