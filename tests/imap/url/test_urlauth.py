"""URLAUTH (RFC 4467) with URL-PARTIAL (RFC 5550) over real IMAP sessions, and BURL (RFC 4468)
on real submission sessions resolving the same URLs."""

from __future__ import annotations

import os
import re
import smtplib
import stat
import time
from datetime import UTC, datetime

from tests.conftest import DEFAULT_PASSWORD, RunningServer, client_tls_context
from tests.imap.conftest import Raw, message
from tests.imap.url.conftest import ALICE, BOB, SETTINGS


class Client(Raw):
    """A raw IMAP session that reads `{n}` literals inside untagged responses."""

    def __init__(self, srv, user: str = ALICE):
        super().__init__(srv.port("imap"))
        self.login(user)

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, text: str, tag: bytes = b"t") -> tuple[list[bytes], list[bytes]]:
        """(lines with each literal replaced by `{}`, the literals in order)."""
        self.send(tag + b" " + text.encode() + b"\r\n")
        lines, literals = [], []
        current = b""
        while True:
            line = self.line()
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                literals.append(self.exact(int(m.group(1))))
                current += line[: m.start()] + b"{}"
                continue
            current += line
            lines.append(current)
            if current.startswith(tag + b" "):
                return lines, literals
            current = b""


def append(c: Client, data: bytes, folder: str = "INBOX") -> int:
    c.send(b"a APPEND " + folder.encode() + b" {%d}\r\n" % len(data))
    assert c.line().startswith(b"+")
    c.send(data + b"\r\n")
    tagged = c.until_tagged(b"a")[-1]
    assert tagged.startswith(b"a OK"), tagged
    return int(re.search(rb"APPENDUID \d+ (\d+)", tagged).group(1))


def uidvalidity(c: Client, folder: str = "INBOX") -> int:
    out = c.cmd(f"STATUS {folder} (UIDVALIDITY)".encode())
    return int(re.search(rb"UIDVALIDITY (\d+)", out[0]).group(1))


def rump(owner: str, uid: int, access: str, extra: str = "", folder: str = "INBOX") -> str:
    enc = owner.replace("@", "%40")
    return f"imap://{enc}@mail.example.test/{folder}/;UID={uid}{extra};URLAUTH={access}"


def genurlauth(c: Client, url: str) -> str:
    lines, _ = c.response(f'GENURLAUTH "{url}" INTERNAL')
    assert lines[-1].startswith(b"t OK"), lines
    m = re.match(rb'\* GENURLAUTH "([^"]+)"$', lines[0])
    assert m, lines
    return m.group(1).decode()


def urlfetch(c: Client, *urls: str) -> list[bytes | None]:
    lines, literals = c.response("URLFETCH " + " ".join(f'"{u}"' for u in urls))
    assert lines[-1].startswith(b"t OK"), lines
    head = lines[0]
    assert head.startswith(b"* URLFETCH "), lines
    values = re.findall(rb'"[^"]*" (\{\}|NIL)', head)
    assert len(values) == len(urls), head
    got = iter(literals)
    return [next(got) if v == b"{}" else None for v in values]


def wire(data: bytes) -> bytes:
    return data if b"\r\n" in data else data.replace(b"\n", b"\r\n")


def test_capability_lists_urlauth_and_url_partial(srv):
    c = Client(srv)
    caps = c.cmd(b"CAPABILITY")[0].split()
    assert b"URLAUTH" in caps and b"URL-PARTIAL" in caps


def test_select_reports_urlmech_rfc4467_s8(srv):
    c = Client(srv)
    out = c.cmd(b"EXAMINE INBOX")
    assert b"* OK [URLMECH INTERNAL] URLAUTH mechanisms" in out


def test_genurlauth_then_urlfetch_from_another_session_rfc4467_s7(srv):
    a = Client(srv)
    body = message(1, body="The quick brown fox.\r\n")
    uid = append(a, body)
    url = genurlauth(a, rump(ALICE, uid, "authuser"))
    assert re.search(r";URLAUTH=authuser:internal:01[0-9a-f]{40}$", url)
    b = Client(srv, BOB)
    assert urlfetch(b, url) == [body]
    # The same session, and a section and a partial of it (RFC 5550 ;PARTIAL=).
    part = genurlauth(a, rump(ALICE, uid, "authuser", "/;SECTION=TEXT/;PARTIAL=4.5"))
    assert urlfetch(b, part, url) == [b"quick", body]


def test_user_access_limits_the_url_to_that_user_rfc4467_s3(srv):
    a = Client(srv)
    m = message(2)
    uid = append(a, m)
    for_bob = genurlauth(a, rump(ALICE, uid, "user+bob%40example.test"))
    for_alice = genurlauth(a, rump(ALICE, uid, "user+alice%40example.test"))
    b = Client(srv, BOB)
    assert urlfetch(b, for_bob, for_alice) == [m, None]
    assert urlfetch(a, for_bob, for_alice) == [None, m]


def test_wrong_token_and_altered_url_answer_nil(srv):
    a = Client(srv)
    m = message(3)
    uid = append(a, m)
    url = genurlauth(a, rump(ALICE, uid, "authuser"))
    b = Client(srv, BOB)
    wrong = url[:-1] + ("0" if url[-1] != "0" else "1")
    other_uid = url.replace(f"/;UID={uid};", f"/;UID={uid + 1};")
    no_such_box = url.replace("/INBOX/", "/Nowhere/")
    assert urlfetch(b, wrong, other_uid, no_such_box, url) == [None, None, None, m]


def test_expired_url_is_refused_rfc4467_s3(srv):
    a = Client(srv)
    m = message(4)
    uid = append(a, m)
    past = datetime.fromtimestamp(time.time() - 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    old = genurlauth(a, rump(ALICE, uid, "authuser", f";EXPIRE={past}"))
    fresh = genurlauth(a, rump(ALICE, uid, "authuser", f";EXPIRE={future}"))
    b = Client(srv, BOB)
    assert urlfetch(b, old, fresh) == [None, m]


def test_resetkey_revokes_the_mailbox_urls_rfc4467_s7(srv):
    a = Client(srv)
    m5, m6 = message(5), message(6)
    uid = append(a, m5)
    sent_uid = append(a, m6, "Sent")
    inbox_url = genurlauth(a, rump(ALICE, uid, "authuser"))
    sent_url = genurlauth(a, rump(ALICE, sent_uid, "authuser", folder="Sent"))
    b = Client(srv, BOB)
    assert urlfetch(b, inbox_url, sent_url) == [m5, m6]
    assert a.cmd(b"RESETKEY INBOX INTERNAL")[-1] == b"t OK [URLMECH INTERNAL] Key reset"
    assert urlfetch(b, inbox_url, sent_url) == [None, m6]
    # A new URL for the same message works with the new key.
    assert urlfetch(b, genurlauth(a, rump(ALICE, uid, "authuser"))) == [m5]
    assert a.cmd(b"RESETKEY")[-1] == b"t OK All keys removed"
    assert urlfetch(b, sent_url) == [None]
    assert a.cmd(b"RESETKEY Nowhere")[-1].startswith(b"t NO [NONEXISTENT]")
    assert a.cmd(b"RESETKEY INBOX XSAMPLE")[-1].startswith(b"t BAD")


def test_genurlauth_refuses_what_rfc4467_s7_makes_bad(srv):
    a = Client(srv)
    m = message(7)
    uid = append(a, m)
    plain = f"imap://alice%40example.test@mail.example.test/INBOX/;UID={uid}"
    cases = [
        f'GENURLAUTH "{plain}" INTERNAL',  # no access identifier
        f'GENURLAUTH "imap://mail.example.test/INBOX/;UID={uid};URLAUTH=authuser" INTERNAL',
        f'GENURLAUTH "{rump(BOB, uid, "authuser")}" INTERNAL',  # another user's key table
        f'GENURLAUTH "{rump(ALICE, uid, "authuser", folder="Nowhere")}" INTERNAL',
        f'GENURLAUTH "{rump(ALICE, uid, "authuser")}" XSAMPLE',
        f'GENURLAUTH "{rump(ALICE, uid, "authuser")}"',
    ]
    for text in cases:
        assert a.cmd(text.encode())[-1].startswith(b"t BAD"), text


def test_other_users_mailbox_is_not_readable_without_urlauth(srv):
    a = Client(srv)
    m = message(8)
    uid = append(a, m)
    b = Client(srv, BOB)
    own = f"imap://alice%40example.test@mail.example.test/INBOX/;UID={uid}"
    # RFC 5092: a plain URL reads the session's own mailboxes only.
    assert urlfetch(a, own, f"/INBOX/;UID={uid}") == [m, m]
    assert urlfetch(b, own) == [None]


def test_submit_access_is_for_the_submission_server_only_rfc4467_s3(srv):
    a = Client(srv)
    m = message(9)
    uid = append(a, m)
    url = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test"))
    assert urlfetch(a, url) == [None]
    assert urlfetch(Client(srv, BOB), url) == [None]


def test_access_keys_survive_a_restart_and_are_private(srv, tmp_path):
    a = Client(srv)
    m = message(10)
    uid = append(a, m)
    url = genurlauth(a, rump(ALICE, uid, "anonymous"))
    a.close()
    keys = srv.services.store.path_for(ALICE) / "urlauth-keys.json"
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    srv.stop()
    again = RunningServer(tmp_path / "restarted", {**SETTINGS, "data_dir": str(srv.root / "data")})
    try:
        assert urlfetch(Client(again, BOB), url) == [m]
    finally:
        again.stop()


# --- BURL (RFC 4468) -------------------------------------------------------------------------


def submission(srv, user: str = ALICE) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=20)
    s.ehlo("client.example.test")
    s.login(user, DEFAULT_PASSWORD)
    s.ehlo("client.example.test")
    return s


def delivered(srv, address: str, count: int) -> list[bytes]:
    deadline = time.time() + 10
    while time.time() < deadline:
        found = srv.messages(address)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{address} got {len(srv.messages(address))} messages")


def test_ehlo_offers_burl_imap_after_auth_on_submission_only_rfc4468_s3(srv, server_factory):
    s = smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=10)
    s.ehlo("c")
    assert s.esmtp_features.get("burl") == ""
    s.login(ALICE, DEFAULT_PASSWORD)
    s.ehlo("c")
    assert s.esmtp_features.get("burl") == "imap"
    mx = server_factory("mx", auth={"plaintext": "loopback"})
    mx.add_user(ALICE)
    inbound = smtplib.SMTP("127.0.0.1", mx.port("smtp"), timeout=10)
    inbound.ehlo("c")
    assert "burl" not in inbound.esmtp_features
    assert inbound.docmd("BURL", "imap://x@y/INBOX/;UID=1 LAST")[0] == 502


def big_message(size: int) -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"
    head = (
        b"From: <alice@example.test>\r\nTo: <bob@example.test>\r\nSubject: big\r\n"
        b"Message-ID: <big@example.test>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n"
    )
    return head + line * (size // len(line))


def test_burl_submits_a_1mb_message_from_imap_rfc4468_s3_2(srv):
    a = Client(srv)
    data = big_message(1024 * 1024)
    uid = append(a, data, "Drafts")
    url = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test", folder="Drafts"))
    s = submission(srv)
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.docmd("BURL", f"{url} LAST")
    assert code == 250, text
    got = delivered(srv, BOB, 1)[0]
    assert got.endswith(data.replace(b"\r\n", b"\n")) or got.endswith(data)


def test_burl_between_bdat_chunks_rfc4468_s3_2(srv):
    a = Client(srv)
    body = b"Forwarded text.\r\n"
    uid = append(a, b"Subject: inner\r\n\r\n" + body)
    url = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test", "/;SECTION=TEXT"))
    s = submission(srv)
    s.mail(ALICE)
    s.rcpt(BOB)
    head = b"From: <alice@example.test>\r\nTo: <bob@example.test>\r\nSubject: mixed\r\n\r\n"
    s.send(b"BDAT %d\r\n" % len(head) + head)
    assert s.getreply()[0] == 250
    code, text = s.docmd("BURL", url)
    assert (code, text[:5]) == (250, b"2.5.0")
    tail = b"-- the end\r\n"
    s.send(b"BDAT %d LAST\r\n" % len(tail) + tail)
    assert s.getreply()[0] == 250
    got = delivered(srv, BOB, 1)[0].replace(b"\r\n", b"\n")
    assert b"\nSubject: mixed\n" in got
    assert got.endswith(b"\n\nForwarded text.\n-- the end\n")


def test_burl_refusals_carry_rfc4468_s6_codes(srv):
    a = Client(srv)
    m = message(11)
    uid = append(a, m)
    for_bob = genurlauth(a, rump(ALICE, uid, "submit+bob%40example.test"))
    for_alice = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test"))
    authuser = genurlauth(a, rump(ALICE, uid, "authuser"))
    plain = f"imap://alice%40example.test@mail.example.test/INBOX/;UID={uid}"
    s = submission(srv)
    s.mail(ALICE)
    assert s.docmd("BURL", f"{for_alice} LAST")[:2] == (
        554,
        b"5.5.0 No recipients have been specified",
    )
    s.rset()
    cases = [
        (for_bob, (554, b"5.7.0")),  # submit+ for another user (RFC 4468 §3.3)
        (authuser, (554, b"5.7.0")),
        (for_alice[:-1] + ("0" if for_alice[-1] != "0" else "1"), (554, b"5.7.0")),
        (plain, (554, b"5.7.8")),
    ]
    for url, expected in cases:
        s.mail(ALICE)
        s.rcpt(BOB)
        code, text = s.docmd("BURL", f"{url} LAST")
        assert (code, text[:5]) == expected, url
        # The failed URL failed the transaction: nothing more is taken until RSET.
        assert s.docmd("BDAT", "0 LAST")[0] == 503
        s.rset()
    # And Bob, logged in to submission, cannot send Alice's submit+alice URL.
    b = submission(srv, BOB)
    b.mail(BOB)
    b.rcpt(ALICE)
    assert b.docmd("BURL", f"{for_alice} LAST")[:2][0] == 554
    assert srv.messages(BOB) == []


def test_a_mailbox_made_again_under_the_same_name_gets_a_new_key(srv):
    """A URL without ;UIDVALIDITY= must not open whatever now has its UID in a new mailbox
    of the old name: the key belongs to the mailbox's UIDVALIDITY."""
    a = Client(srv)
    assert a.cmd(b"CREATE Box")[-1].startswith(b"t OK")
    m = message(12)
    uid = append(a, m, "Box")
    url = genurlauth(a, rump(ALICE, uid, "authuser", folder="Box"))
    b = Client(srv, BOB)
    assert urlfetch(b, url) == [m]
    assert a.cmd(b"DELETE Box")[-1].startswith(b"t OK")
    assert a.cmd(b"CREATE Box")[-1].startswith(b"t OK")
    assert append(a, message(13), "Box") == uid
    assert urlfetch(b, url) == [None]


def test_refusals_are_logged_without_the_token(srv, logs):
    a = Client(srv)
    uid = append(a, message(14))
    url = genurlauth(a, rump(ALICE, uid, "user+alice%40example.test"))
    assert urlfetch(Client(srv, BOB), url) == [None]
    token = url.rsplit(":", 1)[1]
    lines = logs.matching("URLFETCH refused")
    assert lines and not any(token in line for line in lines)


def test_burl_pipelined_after_auth_on_465_replies_in_order_rfc4468_s3_4(srv):
    """The whole transaction in one write over implicit TLS (RFC 8314): each reply in order,
    the BURL's only once its URL is resolved and the message delivered."""
    a = Client(srv)
    m = message(15, extra="").replace(
        b"From: Bob <bob@example.test>", b"From: <alice@example.test>"
    )
    uid = append(a, m, "Sent")
    url = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test", folder="Sent"))
    s = smtplib.SMTP_SSL(
        "127.0.0.1", srv.port("submissions"), context=client_tls_context(), timeout=20
    )
    s.ehlo("c")
    s.login(ALICE, DEFAULT_PASSWORD)
    s.send(f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nBURL {url} LAST\r\nNOOP\r\n".encode())
    replies = [s.getreply() for _ in range(4)]
    assert [code for code, _ in replies] == [250, 250, 250, 250]
    assert replies[2][1].startswith(b"2.0.0 Ok: queued")
    got = delivered(srv, BOB, 1)[0]
    assert got.endswith(m.split(b"\r\n\r\n", 1)[1].replace(b"\r\n", b"\n"))


def test_resetkey_revokes_at_once_for_every_session_and_burl_rfc4467_s7(srv):
    """RESETKEY's OK means the old key is gone everywhere: another session of the same user,
    another user and the submission server, each of which resolved the URL before (so any
    copy of the key they kept would show), refuse it right after."""
    a, again, b = Client(srv), Client(srv), Client(srv, BOB)
    m = message(16)
    uid = append(a, m)
    own = genurlauth(a, rump(ALICE, uid, "user+alice%40example.test"))
    anyone = genurlauth(a, rump(ALICE, uid, "authuser"))
    submit = genurlauth(a, rump(ALICE, uid, "submit+alice%40example.test"))
    assert urlfetch(again, own, anyone) == [m, m]
    assert urlfetch(b, anyone) == [m]
    s = submission(srv)
    s.mail(ALICE)
    s.rcpt(BOB)
    assert s.docmd("BURL", submit)[0] == 250
    s.rset()
    # The RESETKEY and, pipelined behind it in the same write, a URLFETCH of the same session.
    a.send(b"r RESETKEY INBOX\r\nf URLFETCH " + f'"{own}"'.encode() + b"\r\n")
    assert a.until_tagged(b"r")[-1].startswith(b"r OK")
    fetched = a.until_tagged(b"f")
    assert fetched[-1].startswith(b"f OK") and fetched[0].endswith(b" NIL"), fetched
    assert urlfetch(again, own, anyone) == [None, None]
    assert urlfetch(b, anyone) == [None]
    s.mail(ALICE)
    s.rcpt(BOB)
    code, text = s.docmd("BURL", f"{submit} LAST")
    assert (code, text[:5]) == (554, b"5.7.0")
    s.rset()
    # RESETKEY without a mailbox likewise, for the URLs made with the new key.
    fresh = genurlauth(a, rump(ALICE, uid, "authuser"))
    assert urlfetch(b, fresh) == [m]
    assert a.cmd(b"RESETKEY")[-1].startswith(b"t OK")
    assert urlfetch(b, fresh) == [None]
    assert urlfetch(again, fresh) == [None]
    assert srv.messages(BOB) == []
