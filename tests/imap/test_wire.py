"""The reader on a real socket: pipelined commands answered in order, literals split across
packets, LITERAL+ (RFC 7888), malformed commands answered BAD with the session going on,
over-long lines refused (RFC 7162 §4 guidance), and literals inside other commands."""

import time

from tests.imap.conftest import IMAP_ONLY, Raw, append_n, connect


def test_pipelined_commands_answered_in_order(imap_server):
    append_n(connect(imap_server), 3)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(
        b"a SELECT INBOX\r\nb FETCH 1:3 (UID)\r\nc STORE 1 +FLAGS (\\Seen)\r\n"
        b"d SEARCH SEEN\r\ne COPY 1:* Sent\r\nf STATUS Sent (MESSAGES)\r\n"
    )
    out = r.until_tagged(b"f")
    tagged = [line.split()[0] for line in out if not line.startswith(b"*")]
    assert tagged == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert b"* SEARCH 1" in out and b"* STATUS Sent (MESSAGES 3)" in out


def test_literal_split_across_packets(imap_server):
    r = Raw(imap_server.port("imap"))
    r.send(b"a LOGIN {19}\r\n")
    assert r.line().startswith(b"+ ")
    for ch in b"alice@example.test":
        r.send(bytes([ch]))
        time.sleep(0.001)
    r.send(b" ")
    # Wait: the literal was 18 characters plus one space; a 19-byte literal swallows it.
    r.send(b'"x"\r\n')
    out = r.until_tagged(b"a")
    assert out[-1].startswith(b"a NO") or out[-1].startswith(b"a BAD")
    r.send(b"b LOGIN {18}\r\n")
    assert r.line().startswith(b"+ ")
    r.send(b"alice@example")
    time.sleep(0.05)
    r.send(b".test {15+}\r\nsecret-")
    time.sleep(0.05)
    r.send(b"Passw0rd\r\n")
    assert r.until_tagged(b"b")[-1].startswith(b"b OK")


def test_literals_in_search_and_list(imap_server):
    append_n(connect(imap_server), 2)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.send(b"s SEARCH CHARSET UTF-8 SUBJECT {9+}\r\nmessage 2\r\n")
    assert b"* SEARCH 2" in r.until_tagged(b"s")
    r.send(b'l LIST "" {4+}\r\nSen*\r\n')
    out = r.until_tagged(b"l")
    assert out[0].endswith(b'"/" Sent')


def test_malformed_commands_get_bad_and_session_continues(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    for bad in (
        b"a1 SELECT",
        b'a2 LOGIN "unterminated',
        b"a3 FETCH 1 (FLAGS",
        b"a4 STATUS INBOX MESSAGES)",
    ):
        out = r.cmd(bad[3:], bad[:2])
        assert out[-1].startswith(bad[:2] + b" BAD"), (bad, out)
    r.send(b"\r\n")  # an empty line is ignored
    assert r.cmd(b"NOOP")[-1] == b"t OK NOOP completed"
    r.send(b"+x NOOP\r\n")
    assert r.line().startswith(b"* BAD")


def test_overlong_line_is_refused_without_buffering(server_factory):
    srv = server_factory(
        listen=IMAP_ONLY, auth={"plaintext": "loopback"}, imap={"max_command_line": 1000}
    )
    srv.add_user("alice@example.test")
    r = Raw(srv.port("imap"))
    r.send(b"a NOOP " + b"x" * 5000 + b"\r\n")
    assert r.line().startswith(b"a BAD [TOOBIG]")
    assert r.cmd(b"NOOP")[-1] == b"t OK NOOP completed"


def test_fetch_body_section_with_spaces_is_one_item(imap_server):
    append_n(connect(imap_server), 1)
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.send(b"f UID FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]<0.20>)\r\n")
    first = r.line()
    assert first == b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT FROM)]<0> {20}"


def test_nodelay_on_plain_after_starttls_and_on_993(server_factory):
    """Whole responses go out at once (TCP_NODELAY), TLS or not; the same socket lookup arms
    TCP_QUICKACK for literals (imaplib's APPEND otherwise waits 40 ms on a delayed ACK)."""
    import gc
    import imaplib
    import socket
    import ssl

    from mailsuite.imap.server import ImapProtocol

    srv = server_factory(listen=IMAP_ONLY)
    srv.add_user("alice@example.test")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c1 = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=ctx)
    c2 = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    c2.starttls(ctx)

    def options():
        out = []
        for p in gc.get_objects():
            if isinstance(p, ImapProtocol) and not p.closed and p.services is srv.services:
                sock = p._socket()
                out.append((p.kind, sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
        return sorted(out)

    assert srv.call(options) == [("imap", 1), ("imaps", 1)]
    c1.logout()
    c2.logout()
