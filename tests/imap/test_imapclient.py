"""The extensions as the imapclient package drives them (the library Thunderbird-like Python
clients and many scripts use): STARTTLS, ID, NAMESPACE, ENABLE, CONDSTORE, IDLE, MOVE,
UIDPLUS, MULTIAPPEND, QUOTA, SPECIAL-USE, SORT, THREAD, ESEARCH-free SEARCH with CHARSET."""

import ssl
import threading

from imapclient import IMAPClient

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import IMAP_ONLY, USER, message


def _client(srv, tls: bool = True) -> IMAPClient:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = IMAPClient("127.0.0.1", port=srv.port("imap"), ssl=False, timeout=10)
    if tls:
        c.starttls(ctx)
    c.login(USER, DEFAULT_PASSWORD)
    return c


def test_imapclient_session_with_extensions(server_factory):
    srv = server_factory(listen=IMAP_ONLY)
    srv.add_user(USER, quota_bytes=50 * 1024 * 1024)
    c = _client(srv)
    caps = c.capabilities()
    for cap in (b"IDLE", b"MOVE", b"UIDPLUS", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"SORT"):
        assert cap in caps
    server_id = c.id_({"name": "pytest"})
    assert server_id[0][:2] == (b"name", b"mailsuite")
    ns = c.namespace()
    assert ns.personal == (("", "/"),)
    assert c.enable("CONDSTORE") == [b"CONDSTORE"]
    assert c.find_special_folder(b"\\Sent") == "Sent"

    c.multiappend("INBOX", [message(1, subject="b"), message(2, subject="a")])
    c.append("INBOX", message(3, subject="c"), flags=[b"\\Flagged"])
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 3 and info[b"HIGHESTMODSEQ"] > 0
    uids = c.search(["ALL"])
    assert uids == [1, 2, 3]
    assert c.search(["SUBJECT", "a"], charset="UTF-8") == [2]
    assert c.sort(["SUBJECT"]) == [2, 1, 3]
    assert c.thread() == ((1,), (2,), (3,))
    data = c.fetch(uids, ["FLAGS", "MODSEQ"])
    assert b"\\Flagged" in data[3][b"FLAGS"] and data[3][b"MODSEQ"][0] > 0

    c.set_flags([1], [b"\\Seen"])
    assert set(c.get_flags([1])[1]) == {b"\\Seen", b"\\Recent"}
    c.move([2], "Archive")
    assert c.search() == [1, 3]
    c.add_flags([3], [b"\\Deleted"])
    c.uid_expunge([3])
    assert c.search() == [1]
    roots, quotas = c.get_quota_root("INBOX")
    assert quotas and quotas[0].resource == "STORAGE"
    c.logout()


def test_imapclient_idle_sees_a_new_message(server_factory):
    srv = server_factory(listen=IMAP_ONLY)
    srv.add_user(USER)
    watcher = _client(srv)
    watcher.select_folder("INBOX")
    watcher.idle()
    writer = _client(srv)

    def deliver():
        writer.append("INBOX", message(1))

    t = threading.Thread(target=deliver)
    t.start()
    responses = watcher.idle_check(timeout=5)
    t.join()
    assert (1, b"EXISTS") in responses
    watcher.idle_done()
    assert watcher.search() == [1]
    watcher.logout()
    writer.logout()
