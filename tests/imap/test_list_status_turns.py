"""LIST-STATUS (RFC 5819) over thousands of folders answers a bounded number a reactor turn."""

from __future__ import annotations

from mailsuite.imap.commands.mailbox import STATUS_PER_TURN
from tests.imap.conftest import Raw


def test_list_status_of_many_folders_lets_another_connection_in_between(imap_server):
    folders = 4 * STATUS_PER_TURN
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"".join(b"c%d CREATE f%d\r\n" % (i, i) for i in range(folders)))
    for i in range(folders):
        assert b"OK" in r.until_tagged(b"c%d" % i)[-1]
    other = Raw(imap_server.port("imap"))
    other.login()
    # Both requests in before the server reads either: the NOOP is answered after the first
    # STATUS_PER_TURN folders, while the LIST still has most of its folders to do.
    r.send(b'l LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))\r\n')
    other.send(b"n NOOP\r\n")
    assert other.until_tagged(b"n")[-1] == b"n OK NOOP completed"
    r.sock.setblocking(False)
    early = r.buf
    try:
        while chunk := r.sock.recv(1 << 20):
            early += chunk
    except BlockingIOError:
        pass
    assert b"\r\nl OK" not in early
    r.sock.setblocking(True)
    lines = r.until_tagged(b"l")
    assert lines[-1] == b"l OK LIST completed"
    assert sum(line.startswith(b"* STATUS f") for line in lines) == folders
    assert sum(line.startswith(b"* LIST ") for line in lines) > folders  # and INBOX
    other.close()
    r.close()
