"""URLAUTH's folder lookups leave the disk to the durable pool: a folder not in memory is
loaded there, and one another program changed is listed there before the URL is resolved."""

from __future__ import annotations

import os
import time

from tests.imap.url.conftest import ALICE, BOB
from tests.imap.url.test_urlauth import Client, genurlauth, rump, urlfetch, wire
from tests.reactor_disk import ReactorDiskWatch, reactor_thread

MSG = b"From: carol@example.test\r\nTo: alice@example.test\r\nSubject: kept\r\n\r\nOld.\r\n"
NEW = b"From: dave@example.test\r\nTo: alice@example.test\r\nSubject: new\r\n\r\nNew.\r\n"


def test_genurlauth_and_urlfetch_leave_the_disk_to_the_pool(srv):
    mbox = srv.mailbox(ALICE)
    mbox.create_folder("Projects")
    mbox.deliver(MSG, folder="Projects")
    path = mbox.folder_path("Projects")
    past = time.time() - 60  # nobody touched it lately: its mtimes prove it unchanged
    for sub in ("cur", "new", "tmp"):
        os.utime(path / sub, (past, past))
    assert not srv.call(mbox.is_loaded, "Projects")
    a, b = Client(srv, ALICE), Client(srv, BOB)
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        url = genurlauth(a, rump(ALICE, 1, "authuser", folder="Projects"))
        assert urlfetch(b, url) == [wire(MSG)]
    assert srv.call(mbox.is_loaded, "Projects")
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))

    # Another program delivers into the folder, now in memory: the URL of its next UID
    # resolves once the folder is listed, in the pool.
    (path / "new" / "1700000000.M1P1Q1.elsewhere").write_bytes(NEW)
    with ReactorDiskWatch.get().window(reactor_thread()) as events:
        url = genurlauth(a, rump(ALICE, 2, "authuser", folder="Projects"))
        assert urlfetch(b, url) == [wire(NEW)]
    assert not events, "disk work on the reactor:\n" + "\n".join(map(str, events))
    a.close()
    b.close()
