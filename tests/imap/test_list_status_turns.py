"""LIST-STATUS (RFC 5819) over thousands of folders answers a bounded number a reactor turn."""

from __future__ import annotations

from mailsuite.imap.commands.mailbox import STATUS_PER_TURN
from tests.imap.conftest import Raw, answered_in_turns


def test_list_status_of_many_folders_lets_another_connection_in_between(imap_server):
    folders = 4 * STATUS_PER_TURN
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"".join(b"c%d CREATE f%d\r\n" % (i, i) for i in range(folders)))
    for i in range(folders):
        assert b"OK" in r.until_tagged(b"c%d" % i)[-1]
    other = Raw(imap_server.port("imap"))
    other.login()
    # The NOOP is answered after the first STATUS_PER_TURN folders, while the LIST still has
    # most of its folders to do.
    lines = answered_in_turns(r, other, b'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert sum(line.startswith(b"* STATUS f") for line in lines) == folders
    assert sum(line.startswith(b"* LIST ") for line in lines) > folders  # and INBOX
    other.close()
    r.close()
