"""The POP3 server over real sockets and TLS, driven by poplib and by raw pipelined writes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import imaplib
import poplib
import socket
import ssl
import threading
import time

import pytest

from tests.conftest import DEFAULT_PASSWORD, RunningServer

ALICE = "alice@example.test"
MESSAGES = [
    b"From: a@example.net\nSubject: one\n\nfirst body\n.starts with a dot\n..two dots\n",
    b"From: b@example.net\nSubject: two\n\nline 1\nline 2\nline 3\n",
    b"From: c@example.net\nSubject: three\n\nno final newline",
]


def wire(msg: bytes) -> bytes:
    return msg.replace(b"\n", b"\r\n")


def deliver(srv: RunningServer, address: str, *messages: bytes) -> list[str]:
    """Store messages the way delivery does (blocking file writes, fine off the reactor)."""
    mbox = srv.mailbox(address)
    return [mbox.deliver(m) for m in messages]


def inbox(srv: RunningServer, address: str = ALICE):
    return srv.call(lambda: srv.services.store.mailbox(address).folder("INBOX"))


def pop3s(srv: RunningServer, ctx: ssl.SSLContext) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=ctx, timeout=20)


def login_s(srv, ctx, user=ALICE) -> poplib.POP3_SSL:
    p = pop3s(srv, ctx)
    p.user(user)
    p.pass_(DEFAULT_PASSWORD)
    return p


@pytest.fixture
def alice(mail_server):
    deliver(mail_server, ALICE, *MESSAGES)
    return mail_server


class Raw:
    """A raw client for pipelining: write many commands at once, read replies in order."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def body(self) -> list[bytes]:
        lines = []
        while (line := self.line()) != b".":
            lines.append(line)
        return lines


def raw_pop3s(srv, ctx) -> Raw:
    sock = socket.create_connection(("127.0.0.1", srv.port("pop3s")), timeout=20)
    return Raw(ctx.wrap_socket(sock))


# --- AUTHORIZATION, TLS ------------------------------------------------------------------------


def test_rfc2595_plain_port_offers_stls_and_refuses_passwords_before_tls(alice, tls_context):
    p = poplib.POP3("127.0.0.1", alice.port("pop3"), timeout=20)
    assert p.getwelcome().startswith(b"+OK")
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd("AUTH PLAIN " + base64.b64encode(b"\0a\0b").decode())
    p.stls(tls_context)
    caps = p.capa()
    assert (
        "STLS" not in caps
        and "USER" in caps
        and caps["SASL"] == ["PLAIN", "LOGIN", "SCRAM-SHA-256"]
    )
    for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8"):
        assert cap in caps
    assert caps["IMPLEMENTATION"] == ["mailsuite"]
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    assert p.stat() == (3, sum(len(wire(m)) for m in MESSAGES))
    # RFC 2595 §4: STLS only once; and not in TRANSACTION state.
    with pytest.raises(poplib.error_proto):
        p._shortcmd("STLS")
    p.quit()


def test_loopback_plaintext_exception_when_configured(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=20)
    assert "USER" in p.capa()
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    assert p.stat() == (0, 0)
    p.quit()


def test_rfc1939_every_command_over_pop3s(alice, tls_context):
    p = login_s(alice, tls_context)
    resp, listing, _ = p.list()
    sizes = [len(wire(m)) for m in MESSAGES]
    assert resp.startswith(b"+OK 3 messages")
    assert listing == [f"{i} {s}".encode() for i, s in enumerate(sizes, 1)]
    assert p.list(2) == f"+OK 2 {sizes[1]}".encode()
    folder = inbox(alice)
    uids = alice.call(lambda: [m.uid for m in folder.messages])
    expected = [b"%d %08X%08X" % (i, u, folder.uidvalidity) for i, u in enumerate(uids, 1)]
    assert p.uidl()[1] == expected
    assert p.uidl(3) == b"+OK " + expected[2]
    resp, lines, octets = p.retr(1)
    assert resp == f"+OK {sizes[0]} octets".encode()
    # poplib undoes the byte-stuffing: what it returns is the message itself.
    assert lines == MESSAGES[0].rstrip(b"\n").split(b"\n")
    resp, lines, _ = p.retr(3)
    assert lines[-1] == b"no final newline"
    assert p.top(2, 1)[1] == [b"From: b@example.net", b"Subject: two", b"", b"line 1"]
    assert p.top(2, 0)[1] == [b"From: b@example.net", b"Subject: two", b""]
    assert p.top(2, 99)[1] == MESSAGES[1].rstrip(b"\n").split(b"\n")
    assert p.noop().startswith(b"+OK")
    assert p.dele(2).startswith(b"+OK")
    for cmd in (lambda: p.list(2), lambda: p.retr(2), lambda: p.dele(2), lambda: p.uidl(2)):
        with pytest.raises(poplib.error_proto):
            cmd()
    assert p.stat() == (2, sizes[0] + sizes[2])
    assert p.rset().startswith(b"+OK 3 messages")
    assert p.stat()[0] == 3
    for bad in ("RETR 0", "RETR 4", "RETR x", "TOP 1", "TOP 1 -1", "DELE", "LIST 9"):
        with pytest.raises(poplib.error_proto):
            p._shortcmd(bad)
    with pytest.raises(poplib.error_proto, match="APOP"):
        p._shortcmd("APOP a b")
    assert p.quit().startswith(b"+OK")
    assert len(alice.message_files(ALICE)) == 3


def test_rfc5034_auth_plain_login_and_cancel(alice, tls_context):
    p = pop3s(alice, tls_context)
    assert p._longcmd("AUTH")[1] == [b"PLAIN", b"LOGIN", b"SCRAM-SHA-256"]
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        p._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0wrong".encode()).decode())
    # Challenge/response form with "*" cancelling.
    assert p._shortcmd("AUTH PLAIN").startswith(b"+ ")
    with pytest.raises(poplib.error_proto):
        p._shortcmd("*")
    creds = base64.b64encode(f"\0{ALICE}\0{DEFAULT_PASSWORD}".encode()).decode()
    assert p._shortcmd("AUTH PLAIN " + creds).startswith(b"+OK")
    assert p.stat()[0] == 3
    p.quit()
    p = pop3s(alice, tls_context)
    assert base64.b64decode(p._shortcmd("AUTH LOGIN")[2:]) == b"Username:"
    assert base64.b64decode(p._shortcmd(base64.b64encode(ALICE.encode()).decode())[2:]) == (
        b"Password:"
    )
    assert p._shortcmd(base64.b64encode(DEFAULT_PASSWORD.encode()).decode()).startswith(b"+OK")
    p.quit()


def test_wrong_password_is_auth_error_and_session_goes_on(alice, tls_context):
    p = pop3s(alice, tls_context)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        p.pass_("wrong")
    # RFC 1939 §7: back to AUTHORIZATION, USER again.
    with pytest.raises(poplib.error_proto):
        p.pass_(DEFAULT_PASSWORD)
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    p.quit()


def test_rfc6856_utf8_command(alice, tls_context):
    p = pop3s(alice, tls_context)
    assert p.utf8().startswith(b"+OK")
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    with pytest.raises(poplib.error_proto):
        p._shortcmd("UTF8")  # AUTHORIZATION state only
    p.quit()


# --- maildrop semantics ------------------------------------------------------------------------


def test_rfc1939_deletions_only_at_quit_and_dropped_connection_deletes_nothing(alice, tls_context):
    p = login_s(alice, tls_context)
    p.dele(1)
    p.dele(3)
    p.close()  # dropped without QUIT: never reaches UPDATE
    time.sleep(0.2)
    assert len(alice.message_files(ALICE)) == 3
    p = login_s(alice, tls_context)  # the lock was released by the drop
    assert p.stat()[0] == 3
    p.dele(1)
    p.dele(3)
    assert p.quit().startswith(b"+OK")
    files = alice.message_files(ALICE)
    assert len(files) == 1 and b"Subject: two" in files[0].read_bytes()


def test_imap_session_keeps_working_and_sees_pop3_deletions_as_expunges(alice, tls_context):
    m = imaplib.IMAP4_SSL("127.0.0.1", alice.port("imaps"), ssl_context=tls_context, timeout=20)
    m.login(ALICE, DEFAULT_PASSWORD)
    assert m.select("INBOX") == ("OK", [b"3"])
    p = login_s(alice, tls_context)  # IMAP does not take the POP3 lock
    p.retr(1)
    p.dele(2)
    assert m.noop()[0] == "OK"  # nothing happens before the POP3 QUIT
    assert "EXPUNGE" not in m.untagged_responses
    p.quit()
    m.noop()
    assert m.untagged_responses.get("EXPUNGE") == [b"2"]
    typ, data = m.fetch("1:*", "(FLAGS)")
    # (imaplib also returns the unsolicited FETCH that NOOP brought: look at the last two.)
    assert typ == "OK" and data[-1].startswith(b"2 (") and b"\\Seen" in data[-2]
    m.logout()


def test_each_session_lists_the_messages_it_logged_in_to(alice, tls_context):
    """Listings are shared between sessions of the same message set, never across a change."""
    first = login_s(alice, tls_context)
    assert len(first.list()[1]) == 3 and len(first.uidl()[1]) == 3
    first.quit()
    deliver(alice, ALICE, b"Subject: four\n\nbody\n")
    second = login_s(alice, tls_context)
    listed, uids = second.list()[1], second.uidl()[1]
    assert [line.split()[0] for line in listed] == [b"1", b"2", b"3", b"4"]
    assert len(set(u.split()[1] for u in uids)) == 4
    assert listed[3] == b"4 %d" % len(wire(b"Subject: four\n\nbody\n"))
    second.quit()


def test_rfc2449_in_use_lock_belongs_to_one_server(server_factory, tls_context):
    """Two servers in one process each lock their own maildrops: a session on one never
    makes the other answer [IN-USE]."""
    first, second = server_factory("a"), server_factory("b")
    for srv in (first, second):
        srv.add_user(ALICE)
        deliver(srv, ALICE, b"Subject: one\n\nbody\n")
    assert first.services.pop3 is not second.services.pop3
    p1 = login_s(first, tls_context)
    p2 = login_s(second, tls_context)
    assert p1.stat()[0] == p2.stat()[0] == 1
    p1.quit()
    p2.quit()


def test_rfc2449_in_use_second_session_refused(alice, tls_context):
    p1 = login_s(alice, tls_context)
    p2 = pop3s(alice, tls_context)
    p2.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        p2.pass_(DEFAULT_PASSWORD)
    # On the plain port too: the lock is per process, not per listener.
    p3 = poplib.POP3("127.0.0.1", alice.port("pop3"), timeout=20)
    p3.stls(tls_context)
    p3.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"IN-USE"):
        p3.pass_(DEFAULT_PASSWORD)
    p3.quit()
    p1.quit()
    p2.user(ALICE)
    p2.pass_(DEFAULT_PASSWORD)
    assert p2.stat()[0] == 3
    p2.quit()


def test_retr_marks_seen_and_top_does_not(alice, tls_context):
    folder = inbox(alice)
    p = login_s(alice, tls_context)
    p.top(1, 0)
    p.retr(2)
    p.quit()
    flags = alice.call(lambda: [sorted(m.flags) for m in folder.messages])
    assert flags == [[], ["\\Seen"], []]


def test_uidl_stable_across_flag_changes_and_restart(server_factory, tmp_path, tls_context):
    srv = RunningServer(tmp_path / "one", {})
    srv.add_user(ALICE)
    deliver(srv, ALICE, *MESSAGES)
    p = login_s(srv, tls_context)
    before = p.uidl()[1]
    p.retr(1)  # \Seen: renames the file
    p.quit()
    folder = inbox(srv)
    msgs = srv.call(lambda: list(folder.messages))
    srv.call(folder.store_flags, msgs, {"\\Flagged", "\\Answered"}, "add")
    p = login_s(srv, tls_context)
    assert p.uidl()[1] == before
    p.quit()
    srv.stop()
    again = RunningServer(tmp_path / "one", {})
    try:
        p = login_s(again, tls_context)
        assert p.uidl()[1] == before
        p.quit()
    finally:
        again.stop()


def test_dovecot_adopted_maildir_keeps_dovecots_default_uidls(server_factory, tls_context):
    """Dovecot's default pop3_uidl_format is %08Xu%08Xv: adopted mail must not look new."""
    srv = server_factory()
    srv.services.accounts.add_user(ALICE, DEFAULT_PASSWORD)
    path = srv.services.store.path_for(ALICE)
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    keys = [
        "1655390418.M100238P743770V0000000000000030I00000000081274AE_0.mx,S=21",
        "1655390500.M200P743771.mx,S=21",
    ]
    (path / "cur" / (keys[0] + ":2,S")).write_bytes(b"Subject: a\n\nbody one\n")
    (path / "cur" / (keys[1] + ":2,")).write_bytes(b"Subject: b\n\nbody two\n")
    (path / "dovecot-uidlist").write_text(
        f"3 V1655390361 N43 G0123456789abcdef0123456789abcdef\n41 :{keys[0]}\n42 :{keys[1]}\n"
    )
    p = login_s(srv, tls_context)
    assert p.uidl()[1] == [b"1 0000002962AB4099", b"2 0000002A62AB4099"]
    p.quit()


# --- pipelining, STLS buffer, limits ----------------------------------------------------------


def test_rfc2449_pipelined_commands_answered_in_order(alice, tls_context):
    c = raw_pop3s(alice, tls_context)
    assert c.line().startswith(b"+OK")
    c.send(
        f"CAPA\r\nUSER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL 1\r\n"
        "RETR 1\r\nTOP 2 0\r\nBOGUS\r\nDELE 3\r\nNOOP\r\nRSET\r\nQUIT\r\n".encode()
    )
    assert c.line().startswith(b"+OK")
    assert b"PIPELINING" in c.body()
    assert c.line() == b"+OK"
    assert c.line() == b"+OK Logged in."
    assert c.line().startswith(b"+OK 3 ")
    assert c.line().startswith(b"+OK 3 messages")
    assert len(c.body()) == 3
    assert c.line().startswith(b"+OK 1 ")
    assert c.line().startswith(b"+OK ") and c.body() == [
        b"From: a@example.net",
        b"Subject: one",
        b"",
        b"first body",
        b"..starts with a dot",  # byte-stuffed on the wire
        b"...two dots",
    ]
    assert c.line() == b"+OK" and c.body() == [b"From: b@example.net", b"Subject: two", b""]
    assert c.line().startswith(b"-ERR")
    assert c.line().startswith(b"+OK")
    assert c.line() == b"+OK"
    assert c.line().startswith(b"+OK 3 messages")
    assert c.line().startswith(b"+OK Logging out")
    assert len(alice.message_files(ALICE)) == 3


def test_rfc2595_plaintext_pipelined_after_stls_is_discarded(alice, tls_context):
    sock = socket.create_connection(("127.0.0.1", alice.port("pop3")), timeout=20)
    plain = Raw(sock)
    assert plain.line().startswith(b"+OK")
    plain.send(b"STLS\r\nCAPA\r\nNOOP\r\n")
    assert plain.line().startswith(b"+OK Begin TLS")
    assert plain.buf == b""
    c = Raw(tls_context.wrap_socket(sock))
    c.send(b"UIDL\r\n")
    # The first reply over TLS answers UIDL: the plaintext CAPA and NOOP never ran.
    assert c.line().startswith(b"-ERR")
    c.send(b"QUIT\r\n")
    assert c.line().startswith(b"+OK")


def test_overlong_lines_and_bad_commands_end_the_session(server_factory, tls_context):
    srv = server_factory(limits={"bad_commands": 3})
    srv.add_user(ALICE)
    c = raw_pop3s(srv, tls_context)
    c.line()
    c.send(b"NOOP " + b"x" * 2000 + b"\r\n")
    assert c.line().startswith(b"-ERR Command line too long")
    c.send(b"CAPA\r\n")
    assert c.line().startswith(b"+OK")  # the session recovered after the long line
    c.body()
    c.send(b"FOO\r\nBAR\r\n")
    assert c.line().startswith(b"-ERR")
    assert c.line().startswith(b"-ERR")
    assert c.line().startswith(b"-ERR Too many bad commands")
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        c.line()


def test_rfc1939_idle_timeout_closes_without_update(alice, tls_context):
    cfg = alice.services.config
    alice.services.config = dataclasses.replace(
        cfg, pop3=dataclasses.replace(cfg.pop3, idle_timeout=1)
    )
    c = raw_pop3s(alice, tls_context)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nDELE 1\r\n".encode())
    for _ in range(3):
        assert c.line().startswith(b"+OK")
    t0 = time.monotonic()
    assert c.line().startswith(b"-ERR Disconnected for inactivity")
    assert time.monotonic() - t0 < 5
    with pytest.raises((EOFError, ConnectionError, ssl.SSLError)):
        c.line()
    assert len(alice.message_files(ALICE)) == 3


def test_connections_per_ip_limit(server_factory, tls_context):
    srv = server_factory(limits={"connections_per_ip": 2})
    first = [raw_pop3s(srv, tls_context) for _ in range(2)]
    for c in first:
        assert c.line().startswith(b"+OK")
    third = raw_pop3s(srv, tls_context)
    assert third.line().startswith(b"-ERR [SYS/TEMP]")
    first[0].send(b"QUIT\r\n")
    first[0].line()
    first[0].sock.close()
    deadline = time.monotonic() + 5
    while srv.call(lambda: srv.services.connections.active) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    fourth = raw_pop3s(srv, tls_context)
    assert fourth.line().startswith(b"+OK")


def test_rfc2449_login_delay(server_factory, tls_context):
    srv = server_factory(pop3={"login_delay": 60})
    srv.add_user(ALICE)
    p = pop3s(srv, tls_context)
    assert p.capa()["LOGIN-DELAY"] == ["60"]
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    p.quit()
    p = pop3s(srv, tls_context)
    p.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[LOGIN-DELAY\]"):
        p.pass_(DEFAULT_PASSWORD)
    p.quit()


# --- big messages -----------------------------------------------------------------------------


def big_message(megabytes: int) -> bytes:
    # Lines starting with "." land on every kind of chunk boundary over 20 MB.
    lines = [b"From: big@example.net", b"Subject: big", b""]
    body_line = b".abcdefghijklmnopqrstuvwxyz0123456789" * 2
    n = megabytes * 1024 * 1024 // (len(body_line) + 1)
    return b"\n".join(lines) + b"\n" + (body_line + b"\n") * n


def test_20mb_message_streams_intact(mail_server, tls_context):
    msg = big_message(20)
    deliver(mail_server, ALICE, msg, MESSAGES[0])
    c = raw_pop3s(mail_server, tls_context)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nRETR 1\r\nTOP 1 2\r\nRETR 2\r\n".encode())
    c.line(), c.line()
    assert c.line() == f"+OK {len(wire(msg))} octets".encode()
    digest, n = hashlib.sha256(), 0
    while (line := c.line()) != b".":
        if line.startswith(b"."):
            line = line[1:]
        digest.update(line + b"\n")
        n += len(line) + 2
    assert n == len(wire(msg))
    assert digest.hexdigest() == hashlib.sha256(msg).hexdigest()
    assert c.line() == b"+OK"
    assert (
        c.body()
        == [b"From: big@example.net", b"Subject: big", b""]
        + [b"." + b".abcdefghijklmnopqrstuvwxyz0123456789" * 2] * 2
    )
    assert c.line().startswith(b"+OK") and c.body()[0] == b"From: a@example.net"


def test_connection_dropped_during_big_retr(mail_server, tls_context):
    deliver(mail_server, ALICE, big_message(8), MESSAGES[0])
    c = raw_pop3s(mail_server, tls_context)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nDELE 2\r\nRETR 1\r\n".encode())
    c.sock.recv(4096)
    c.sock.close()
    time.sleep(0.3)
    p = login_s(mail_server, tls_context)  # lock released, server alive
    assert p.stat()[0] == 2
    p.quit()


def test_pipelined_input_while_streaming_is_throttled_and_answered_in_order(server_factory):
    # Plain TCP: a TLS socket must not be read and written from two threads at once.
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    deliver(srv, ALICE, big_message(4))
    c = Raw(socket.create_connection(("127.0.0.1", srv.port("pop3")), timeout=20))
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\n".encode())
    c.line(), c.line()
    count = 30_000  # 180 KB of commands queued behind a streamed RETR
    sender = threading.Thread(target=c.send, args=(b"RETR 1\r\n" + b"NOOP\r\n" * count,))
    sender.start()
    assert c.line().startswith(b"+OK ")
    assert len(c.body()) > 50_000
    for _ in range(count):
        assert c.line() == b"+OK"
    sender.join(10)
    c.send(b"QUIT\r\n")
    assert c.line().startswith(b"+OK")


def test_rfc2449_expire_advertised_and_validated(server_factory, tls_context):
    srv = server_factory(pop3={"expire": "NEVER"})
    p = pop3s(srv, tls_context)
    assert p.capa()["EXPIRE"] == ["NEVER"]
    p.quit()
    from mailsuite.config import ConfigError
    from mailsuite.pop3.server import build_factory

    cfg = srv.services.config
    for key, value in (("expire", "soon"), ("uidl_format", "%v")):
        srv.services.config = dataclasses.replace(
            cfg, pop3=dataclasses.replace(cfg.pop3, **{key: value})
        )
        with pytest.raises(ConfigError, match=f"pop3.{key}"):
            build_factory(srv.services, "pop3")
    srv.services.config = cfg


def test_throttled_logins_pipelined_stay_in_order(server_factory, tls_context):
    # After one failure the throttle answers at once (an already-failed Deferred): the replies
    # must still come one per command, in order.
    srv = server_factory(auth={"free_failures": 1, "base_delay": 30.0})
    srv.add_user(ALICE)
    c = raw_pop3s(srv, tls_context)
    c.line()
    c.send((f"USER {ALICE}\r\nPASS wrong\r\n" * 4 + "CAPA\r\n").encode())
    replies = [c.line() for _ in range(8)]
    assert replies[0::2] == [b"+OK"] * 4
    assert replies[1].startswith(b"-ERR [AUTH]")
    assert all(r.startswith((b"-ERR [SYS/TEMP]", b"-ERR [AUTH]")) for r in replies[3::2])
    assert any(r.startswith(b"-ERR [SYS/TEMP]") for r in replies[3::2])
    assert c.line().startswith(b"+OK") and b"USER" in c.body()


def test_message_expunged_by_imap_during_a_pop3_session(alice, tls_context):
    p = login_s(alice, tls_context)
    m = imaplib.IMAP4_SSL("127.0.0.1", alice.port("imaps"), ssl_context=tls_context, timeout=20)
    m.login(ALICE, DEFAULT_PASSWORD)
    m.select("INBOX")
    m.store("1", "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    m.logout()
    # RFC 1939 numbering stays fixed for the session; the message itself is gone.
    assert p.stat()[0] == 3
    with pytest.raises(poplib.error_proto, match="removed"):
        p.retr(1)
    assert p.retr(2)[1][1] == b"Subject: two"
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    assert len(alice.message_files(ALICE)) == 2


def test_messages_downloaded_in_order_each_come_whole_and_marked_seen(mail_server, tls_context):
    # From the second RETR in a row the server reads the next message ahead: whatever the
    # client or another session does next (TOP, a big message, an expunge, DELE), each reply
    # is right.
    msgs = [b"Subject: m%d\n\n.dot line %d\nbody %d\n" % (i, i, i) for i in range(1, 11)]
    msgs[2] = MESSAGES[2]  # no final newline
    msgs[4] = big_message(1)  # above the in-memory size: streamed
    deliver(mail_server, ALICE, *msgs)
    p = login_s(mail_server, tls_context)

    def retr(n: int) -> bytes:
        resp, lines, _ = p.retr(n)
        assert resp == f"+OK {len(wire(msgs[n - 1]))} octets".encode()
        return b"\r\n".join(lines) + b"\r\n"

    def expected(n: int) -> bytes:
        # poplib takes the dot-stuffing off; it cannot tell a message without a last line end.
        body = wire(msgs[n - 1])
        return body if body.endswith(b"\r\n") else body + b"\r\n"

    assert retr(1) == expected(1) and retr(2) == expected(2)
    assert p.top(3, 0)[1] == [b"From: c@example.net", b"Subject: three", b""]
    for n in (3, 4, 5, 6):
        assert retr(n) == expected(n)
    m = imaplib.IMAP4_SSL(
        "127.0.0.1", mail_server.port("imaps"), ssl_context=tls_context, timeout=20
    )
    m.login(ALICE, DEFAULT_PASSWORD)
    m.select("INBOX")
    m.store("7", "+FLAGS.SILENT", "(\\Deleted)")
    m.expunge()
    with pytest.raises(poplib.error_proto, match="removed"):
        p.retr(7)
    assert retr(8) == expected(8) and retr(9) == expected(9)
    p.dele(10)
    with pytest.raises(poplib.error_proto, match="deleted"):
        p.retr(10)
    p.rset()
    assert retr(10) == expected(10)
    assert m.select("INBOX")[1] == [b"9"]
    assert m.search(None, "UNSEEN")[1] == [b""]
    m.logout()
    p.quit()


def test_rfc1939_octets_match_the_wire_for_files_dropped_by_other_programs(
    mail_server, tls_context
):
    # Another delivery agent left CRLF line ends and no ,S=/,W= in the name.
    new = mail_server.services.store.path_for(ALICE) / "new"
    body = b"Subject: crlf\r\n\r\n.dot\r\nend\r\n"
    (new / "1700000000.M1P1.other").write_bytes(body)
    c = raw_pop3s(mail_server, tls_context)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\nLIST 1\r\nRETR 1\r\nQUIT\r\n".encode())
    c.line(), c.line()
    assert c.line() == f"+OK 1 {len(body)}".encode()
    assert c.line() == f"+OK {len(body)} octets".encode()
    assert c.body() == [b"Subject: crlf", b"", b"..dot", b"end"]


def test_streamed_retr_after_stls(mail_server, tls_context):
    msg = big_message(2)  # above the in-memory size: goes through the producer
    deliver(mail_server, ALICE, msg)
    p = poplib.POP3("127.0.0.1", mail_server.port("pop3"), timeout=20)
    p.stls(tls_context)
    p.user(ALICE)
    p.pass_(DEFAULT_PASSWORD)
    resp, lines, _ = p.retr(1)
    assert resp == f"+OK {len(wire(msg))} octets".encode()
    assert b"\n".join(lines) + b"\n" == msg
    assert p.noop().startswith(b"+OK")
    p.quit()


def test_retr_to_a_client_that_does_not_read_stops_reading_the_file(server_factory):
    """Back-pressure: with the client not reading, the server reads only what fits in the
    socket buffers plus a chunk or two, not the 20 MB message."""
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user(ALICE)
    deliver(srv, ALICE, big_message(20))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # before connect: no autotuning
    sock.settimeout(20)
    sock.connect(("127.0.0.1", srv.port("pop3")))
    c = Raw(sock)
    c.line()
    c.send(f"USER {ALICE}\r\nPASS {DEFAULT_PASSWORD}\r\n".encode())
    c.line(), c.line()
    c.send(b"RETR 1\r\n")
    time.sleep(0.8)
    session = srv.call(srv.services.pop3.holder, ALICE)
    streamer = session.conn.streamer
    assert streamer is not None
    position = srv.call(streamer.file.tell)
    # Kernel socket buffers (a few MB on loopback) plus our chunk and its read-ahead.
    assert position < 8 * 1024 * 1024, position
    # Reading resumes the stream and the whole message arrives.
    assert c.line().startswith(b"+OK")
    assert len(c.body()) > 250_000
    c.send(b"QUIT\r\n")
    assert c.line().startswith(b"+OK")
