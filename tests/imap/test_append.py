"""APPEND (RFC 3501 §6.3.11): APPENDUID (4315), MULTIAPPEND (3502), LITERAL+ (7888),
APPENDLIMIT/TOOBIG (7889), TRYCREATE, internal date and flags."""

import imaplib

from tests.imap.conftest import IMAP_ONLY, Raw, connect, message


def test_append_returns_appenduid_rfc4315(imap_server):
    c = connect(imap_server)
    typ, data = c.append("Sent", "(\\Seen $Label1)", '"14-Jul-2021 02:44:25 -0700"', message())
    assert typ == "OK"
    code = data[0].decode()
    assert code.startswith("[APPENDUID ")
    uidvalidity, uid = code[len("[APPENDUID ") :].split("]")[0].split()
    c.select("Sent")
    typ, data = c.uid("FETCH", uid, "(FLAGS INTERNALDATE)")
    assert b"\\Seen" in data[0] and b"$Label1" in data[0]
    assert b'INTERNALDATE "14-Jul-2021 09:44:25 +0000"' in data[0]


def test_append_stores_lf_and_serves_crlf(imap_server):
    c = connect(imap_server)
    body = message(body="line one\r\nline two\r\n")
    c.append("INBOX", None, None, body)
    (path,) = imap_server.message_files("alice@example.test")
    assert b"\r\n" not in path.read_bytes()
    c.select("INBOX")
    typ, data = c.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert data[0][1] == body
    assert b"RFC822.SIZE %d" % len(body) in data[0][0]


def test_append_to_missing_folder_is_trycreate(imap_server):
    c = connect(imap_server)
    typ, data = c.append("Nowhere", None, None, message())
    assert typ == "NO" and b"[TRYCREATE]" in data[0]


def test_non_synchronizing_literal_rfc7888(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    msg = message()
    r.send(b"a APPEND INBOX {%d+}\r\n" % len(msg) + msg + b"\r\nb NOOP\r\n")
    out = r.until_tagged(b"b")
    assert out[0].startswith(b"a OK [APPENDUID ")
    assert not any(line.startswith(b"+") for line in out)


def test_multiappend_rfc3502(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    m1, m2, m3 = message(1), message(2), message(3)
    r.send(b"a APPEND INBOX (\\Seen) {%d}\r\n" % len(m1))
    assert r.line().startswith(b"+")
    r.send(m1 + b" {%d}\r\n" % len(m2))
    assert r.line().startswith(b"+")
    r.send(m2 + b' (\\Flagged) "01-Jan-2020 10:00:00 +0000" {%d+}\r\n' % len(m3) + m3 + b"\r\n")
    out = r.until_tagged(b"a")
    assert out[-1].startswith(b"a OK [APPENDUID ") and b" 1:3]" in out[-1]
    out = r.cmd(b"STATUS INBOX (MESSAGES)")
    assert out[0] == b"* STATUS INBOX (MESSAGES 3)"


def test_multiappend_of_tiny_messages_takes_each_literal_as_a_message_rfc3502(imap_server):
    """A date-time is a quoted string (RFC 3501 §9): a short one-line literal after a message
    is the next message, while the same octets quoted are still read as a date-time."""
    r = Raw(imap_server.port("imap"))
    r.login()
    r.send(b"a APPEND INBOX {5+}\r\nhello {5+}\r\nworld {26+}\r\n01-Jan-2020 10:00:00 +0000\r\n")
    assert r.until_tagged(b"a")[-1].startswith(b"a OK [APPENDUID ")
    out = r.cmd(b"STATUS INBOX (MESSAGES)")
    assert out[0] == b"* STATUS INBOX (MESSAGES 3)"
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"FETCH 3 BODY.PEEK[]")[0] == (b"* 3 FETCH (BODY[] {26}"), (
        "the literal that looks like a date is the third message"
    )
    quoted = r.cmd(b'APPEND INBOX "01-Jan-2020 10:00:00 +0000" {5+}\r\nthird', b"b")
    assert quoted[-1].startswith(b"b OK [APPENDUID ")
    assert r.cmd(b"FETCH 4 INTERNALDATE")[0] == (
        b'* 4 FETCH (INTERNALDATE "01-Jan-2020 10:00:00 +0000")'
    )


def test_oversized_literal_refused_without_reading_rfc7889(server_factory):
    srv = server_factory(
        listen=IMAP_ONLY, auth={"plaintext": "loopback"}, imap={"append_limit": 1000}
    )
    srv.add_user("alice@example.test")
    r = Raw(srv.port("imap"))
    assert b"APPENDLIMIT=1000" in r.greeting
    r.login()
    r.send(b"a APPEND INBOX {5000}\r\n")
    assert r.line().startswith(b"a NO [TOOBIG]")
    assert r.cmd(b"NOOP")[-1].startswith(b"t OK")
    # A non-synchronizing one is already on its way: refused, then the connection ends.
    r.send(b"b APPEND INBOX {5000+}\r\n")
    assert r.line().startswith(b"b NO [TOOBIG]")
    assert r.line().startswith(b"* BYE")


def test_large_append_and_fetch(imap_server):
    c = connect(imap_server)
    big = message(body="x" * 77 + "\r\n") * 1
    big = big + (b"y" * 998 + b"\r\n") * 3000
    assert c.append("INBOX", None, None, big)[0] == "OK"
    c.select("INBOX")
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert data[0][1] == big


def test_append_bad_date_is_bad(imap_server):
    c = connect(imap_server)
    try:
        c.append("INBOX", None, '"32-Foo-2020 99:00:00 +0000"', message())
    except imaplib.IMAP4.error as e:
        assert "BAD" in str(e) or "date" in str(e).lower()
    else:
        raise AssertionError("bad date accepted")


def test_multiappend_is_all_or_nothing_rfc3502(server_factory):
    srv = server_factory(listen=IMAP_ONLY, auth={"plaintext": "loopback"})
    srv.add_user("alice@example.test", quota_messages=2)
    r = Raw(srv.port("imap"))
    r.login()
    msgs = [message(i) for i in range(3)]
    wire = b"a APPEND INBOX" + b"".join(b" {%d+}\r\n" % len(m) + m for m in msgs) + b"\r\n"
    r.send(wire)
    assert r.until_tagged(b"a")[-1].startswith(b"a NO [OVERQUOTA]")
    assert r.cmd(b"STATUS INBOX (MESSAGES)")[0] == b"* STATUS INBOX (MESSAGES 0)"


def test_utf8_append_and_literal8_rfc6855_rfc3516(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"ENABLE UTF8=ACCEPT")
    m = "Subject: Grüße\r\nFrom: jörg@example.test\r\n\r\nHallo\r\n".encode()
    r.send(b"a APPEND INBOX UTF8 (~{%d+}\r\n" % len(m) + m + b")\r\n")
    assert r.until_tagged(b"a")[-1].startswith(b"a OK [APPENDUID ")
    binary = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n"
    r.send(b"b APPEND INBOX ~{%d+}\r\n" % len(binary) + binary + b"\r\n")
    assert r.until_tagged(b"b")[-1].startswith(b"b OK")
    r.cmd(b"SELECT INBOX")
    out = r.cmd(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert "Grüße".encode() in out[1]
