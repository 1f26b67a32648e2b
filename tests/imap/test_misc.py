"""CAPABILITY, NOOP, LOGOUT, ID (2971), NAMESPACE (2342), ENABLE (5161), QUOTA (9208),
UNSELECT (3691), COMPRESS=DEFLATE (4978), and the autologout timer (RFC 3501 §5.4)."""

import imaplib
import zlib

from imapclient import IMAPClient

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import IMAP_ONLY, USER, Raw, append_n, connect


def test_id_rfc2971(imap_server):
    r = Raw(imap_server.port("imap"))
    out = r.cmd(b'ID ("name" "iPhone Mail" "version" "17.0")')
    assert out[0].startswith(b'* ID ("name" "mailsuite" "version" ')
    assert r.cmd(b"ID NIL")[-1] == b"t OK ID completed"
    assert r.cmd(b'ID ("name")')[-1].startswith(b"t BAD")


def test_namespace_is_empty_personal_prefix(imap):
    typ, data = imap.namespace()
    assert data == [b'(("" "/")) NIL NIL']


def test_enable_rfc5161(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"ENABLE CONDSTORE X-UNKNOWN")[0] == b"* ENABLED CONDSTORE"
    assert r.cmd(b"ENABLE CONDSTORE")[0] == b"* ENABLED"
    assert r.cmd(b"ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"


def test_utf8_accept_mailbox_names_rfc6855(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"ENABLE UTF8=ACCEPT")
    assert r.cmd('CREATE "Gesendete Objekte ü"'.encode())[-1].startswith(b"t OK")
    out = r.cmd(b'LIST "" "Gesendete*"')
    assert out[0] == '* LIST (\\HasNoChildren) "/" "Gesendete Objekte ü"'.encode()


def test_quota_rfc9208(server_factory):
    srv = server_factory(listen=IMAP_ONLY, auth={"plaintext": "loopback"})
    srv.add_user(USER, quota_bytes=10 * 1024 * 1024, quota_messages=100)
    c = connect(srv)
    append_n(c, 2)
    typ, data = c.getquotaroot("INBOX")
    assert data[0] == [b'INBOX ""']
    quota = data[1][0]
    assert quota.startswith(b'"" (STORAGE 1 10240 MESSAGE 2 100)')
    r = Raw(srv.port("imap"))
    r.login()
    assert r.cmd(b'SETQUOTA "" (STORAGE 1)')[-1].startswith(b"t NO")


def test_quota_exceeded_on_append_is_overquota(server_factory):
    srv = server_factory(listen=IMAP_ONLY, auth={"plaintext": "loopback"})
    srv.add_user(USER, quota_messages=1)
    c = connect(srv)
    append_n(c, 1)
    typ, data = c.append("INBOX", None, None, b"Subject: x\r\n\r\nbody\r\n")
    assert typ == "NO" and b"OVERQUOTA" in data[0]


def _deflating(imap_server):
    """A logged-in raw session after COMPRESS DEFLATE, with its deflater and inflater."""
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"z COMPRESS DEFLATE\r\n")
    assert r.line() == b"z OK DEFLATE active"
    return r, zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15)


def test_compress_deflate_rfc4978(imap_server):
    append_n(connect(imap_server), 3)
    c = IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    r, comp, dec = _deflating(imap_server)
    r.sock.sendall(
        comp.compress(b"a SELECT INBOX\r\nb FETCH 1:* (UID)\r\n") + comp.flush(zlib.Z_SYNC_FLUSH)
    )
    data = b""
    while b"b OK" not in data:
        data += dec.decompress(r.sock.recv(65536))
    assert b"* 3 EXISTS" in data and b"* 3 FETCH (UID 3)" in data
    r.sock.sendall(comp.compress(b"c COMPRESS DEFLATE\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
    data = b""
    while b"c " not in data:
        data += dec.decompress(r.sock.recv(65536))
    assert b"c NO [COMPRESSIONACTIVE]" in data


def test_a_big_body_arrives_whole_through_compress_deflate(imap_server):
    # The body is compressed piece by piece (never joined with the rest of the response).
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + line * (1536 * 1024 // len(line))
    c = connect(imap_server)
    assert c.append("INBOX", None, None, big)[0] == "OK"
    r, comp, dec = _deflating(imap_server)
    r.sock.sendall(
        comp.compress(b"a SELECT INBOX\r\nb FETCH 1 (BODY.PEEK[])\r\n")
        + comp.flush(zlib.Z_SYNC_FLUSH)
    )
    data = b""
    while b"\r\nb OK" not in data:
        data += dec.decompress(r.sock.recv(65536))
    literal = b"* 1 FETCH (BODY[] {%d}\r\n" % len(big)
    assert literal + big + b")\r\nb OK" in data


def test_logout_says_bye(imap_server):
    r = Raw(imap_server.port("imap"))
    out = r.cmd(b"LOGOUT")
    assert out == [b"* BYE mailsuite logging out", b"t OK LOGOUT completed"]


def test_noop_works_in_every_state(imap_server):
    r = Raw(imap_server.port("imap"))
    assert r.cmd(b"NOOP") == [b"t OK NOOP completed"]
    assert r.cmd(b"CAPABILITY")[0].startswith(b"* CAPABILITY IMAP4rev1 ")
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"CHECK") == [b"t OK CHECK completed"]


def test_autologout_timer_rfc3501_5_4(server_factory):
    # The configured minimum is RFC 3501's 30 minutes; the timer itself is checked by
    # driving the protocol's timeout directly.
    srv = server_factory(listen=IMAP_ONLY, auth={"plaintext": "loopback"})
    srv.add_user(USER)
    assert srv.config.imap.idle_timeout >= 1800
    r = Raw(srv.port("imap"))
    r.login()
    from mailsuite.imap.server import ImapProtocol

    def fire():
        import gc

        from twisted.internet import reactor

        mine = [
            p
            for p in gc.get_objects()
            if isinstance(p, ImapProtocol) and not p.closed and p.services is srv.services
        ]
        assert len(mine) == 1
        # The timer is armed with the configured delay and re-armed by client input.
        remaining = mine[0]._timeout.getTime() - reactor.seconds()
        assert 1790 < remaining <= 1800
        mine[0]._timeout.reset(0)

    srv.call(fire)
    assert r.line() == b"* BYE Autologout; idle for too long"


def test_imaplib_full_session(imap):
    append_n(imap, 2)
    assert imap.select("INBOX") == ("OK", [b"2"])
    assert imap.unselect()[0] == "OK"
    try:
        imap.fetch("1", "FLAGS")
    except imaplib.IMAP4.error:
        pass
    else:
        raise AssertionError("FETCH allowed after UNSELECT")
