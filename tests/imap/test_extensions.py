"""IMAP extensions advertised in CAPABILITY, each exercised over a real socket."""

from __future__ import annotations

import imaplib
import re
import time

from tests.imap.conftest import Raw, connect, message


def _caps(imap_server) -> set[str]:
    c = connect(imap_server)
    caps = set(c.capabilities)
    c.logout()
    return caps


def test_within_older_and_younger(imap_server):
    # RFC 5032: OLDER/YOUNGER compare the internal date with now, in seconds.
    assert "WITHIN" in _caps(imap_server)
    c = connect(imap_server)
    two_hours_ago = imaplib.Time2Internaldate(time.time() - 7200)
    assert c.append("INBOX", None, two_hours_ago, message(1))[0] == "OK"
    assert c.append("INBOX", None, None, message(2))[0] == "OK"
    c.select("INBOX")
    assert c.search(None, "OLDER", "3600") == ("OK", [b"1"])
    assert c.search(None, "YOUNGER", "3600") == ("OK", [b"2"])
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"SEARCH OLDER 0")[-1].startswith(b"t BAD")
    r.close()


def test_savedate_fetch_and_search(imap_server):
    # RFC 8514: the time a message was saved into the mailbox, apart from its internal date.
    assert "SAVEDATE" in _caps(imap_server)
    c = connect(imap_server)
    long_ago = imaplib.Time2Internaldate(time.mktime((2001, 2, 3, 12, 0, 0, 0, 0, -1)))
    before = time.time()
    assert c.append("INBOX", None, long_ago, message(1))[0] == "OK"
    c.select("INBOX")
    typ, data = c.fetch("1", "(INTERNALDATE SAVEDATE)")
    assert typ == "OK" and b'INTERNALDATE "03-Feb-2001' in data[0], data
    value = re.search(rb'SAVEDATE ("[^"]+")', data[0]).group(1)
    saved = imaplib.Internaldate2tuple(b"INTERNALDATE " + value)
    assert saved is not None and abs(time.mktime(saved) - before) < 5, data
    today = time.strftime("%d-%b-%Y")
    assert c.search(None, "SAVEDON", today) == ("OK", [b"1"])
    assert c.search(None, "SAVEDBEFORE", today) == ("OK", [b""])
    assert c.search(None, "SAVEDSINCE", "01-Jan-2020") == ("OK", [b"1"])
    assert c.search(None, "SAVEDATESUPPORTED") == ("OK", [b"1"])
    assert c.search(None, "BEFORE", "01-Jan-2002") == ("OK", [b"1"])
    c.logout()


def test_preview_of_plain_html_and_empty_messages(imap_server):
    # RFC 8970: PREVIEW is the start of the text a reader sees first, at most 256 characters.
    assert "PREVIEW" in _caps(imap_server)
    c = connect(imap_server)
    long_body = "Hello   there,\r\n\r\nthis is\tthe body. " + "word " * 100
    assert c.append("INBOX", None, None, message(1, body=long_body))[0] == "OK"
    html_msg = (
        b"From: a@example.test\r\nSubject: h\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="z"\r\n\r\n'
        b"--z\r\nContent-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Caf=C3=A9 &amp; cr=\r\n"
        b"=C3=A8me</p></body></html>\r\n--z--\r\n"
    )
    assert c.append("INBOX", None, None, html_msg)[0] == "OK"
    empty = b"From: a@example.test\r\nSubject: none\r\n\r\n"
    assert c.append("INBOX", None, None, empty)[0] == "OK"
    c.select("INBOX")
    typ, data = c.fetch("1:3", "(PREVIEW)")
    assert typ == "OK"
    first = data[0].decode()
    assert 'PREVIEW "Hello there, this is the body. word word' in first, data
    preview = re.search(r'PREVIEW "([^"]*)"', first).group(1)
    assert len(preview) <= 256
    # UTF-8 text comes as a literal (no UTF8=ACCEPT here)
    assert isinstance(data[1], tuple) and data[1][1].decode("utf-8") == "Café & crème", data
    assert data[-1].endswith(b'PREVIEW "")'), data
    typ, data = c.fetch("1", "(UID PREVIEW (LAZY))")
    assert typ == "OK" and b"PREVIEW" in data[0], data
    c.logout()


def test_objectid_mailboxid_emailid_threadid(imap_server):
    # RFC 8474: MAILBOXID survives RENAME and is new for a recreated name; EMAILID survives
    # COPY and MOVE; THREADID is NIL (no thread ids are kept).
    assert "OBJECTID" in _caps(imap_server)
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"CREATE Projects")
    created = re.match(rb"t OK \[MAILBOXID \(([\w-]+)\)\]", out[-1])
    assert created, out
    mid = created.group(1)
    status = r.cmd(b"STATUS Projects (MAILBOXID MESSAGES)")
    assert b"MAILBOXID (" + mid + b")" in status[0], status
    assert r.cmd(b"RENAME Projects Finished")[-1].startswith(b"t OK")
    out = r.cmd(b"SELECT Finished")
    assert b"* OK [MAILBOXID (" + mid + b")] Ok" in out, out
    r.cmd(b"UNSELECT")
    r.cmd(b"DELETE Finished")
    again = r.cmd(b"CREATE Finished")[-1]
    assert b"MAILBOXID (" + mid + b")" not in again, again
    r.close()
    c = connect(imap_server)
    c.create("Other")
    assert c.append("INBOX", None, None, message(1))[0] == "OK"
    assert c.append("INBOX", None, None, message(2))[0] == "OK"
    c.select("INBOX")
    typ, data = c.fetch("1:2", "(EMAILID THREADID)")
    ids = [re.search(rb"EMAILID \(([\w-]+)\)", d).group(1) for d in data]
    assert len(set(ids)) == 2 and all(b"THREADID NIL" in d for d in data), data
    assert c.copy("1", "Other")[0] == "OK"
    assert c.uid("MOVE", "2", "Other")[0] == "OK"
    c.select("Other")
    typ, data = c.fetch("1:2", "(EMAILID)")
    assert [re.search(rb"EMAILID \(([\w-]+)\)", d).group(1) for d in data] == ids, data
    assert c.search(None, "EMAILID", ids[1].decode()) == ("OK", [b"2"])
    assert c.search(None, "THREADID", "T1") == ("OK", [b""])
    c.logout()


def _from(i: int, sender: str, size: int = 0) -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: s{i}\r\n"
        f"Message-ID: <{i}@x>\r\n\r\n" + "x" * size + "\r\n"
    ).encode()


def test_sort_display_esort_and_partial(imap_server):
    caps = _caps(imap_server)
    assert {"SORT=DISPLAY", "ESORT", "PARTIAL"} <= caps
    c = connect(imap_server)
    senders = [
        '"Zoe Adams" <aaa@example.test>',  # display name Zoe
        "bob@example.test",  # no display name: the address
        "=?utf-8?q?=C3=89mile?= <zzz@example.test>",  # Émile
        '"anna" <yyy@example.test>',
    ]
    for i, s in enumerate(senders, 1):
        assert c.append("INBOX", None, None, _from(i, s, size=100 * (5 - i)))[0] == "OK"
    c.select("INBOX")
    # RFC 5957: by display name (or address) under i;unicode-casemap (RFC 5255 §4.2): Émile
    # is E + U+0301, so it sorts among the E's, before Zoe (Dovecot 2.3 answers the same)
    assert c.sort("(DISPLAYFROM)", "UTF-8", "ALL") == ("OK", [b"4 2 3 1"])
    assert c.sort("(FROM)", "UTF-8", "ALL") == ("OK", [b"1 2 4 3"])
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    # RFC 5267 §3: ESEARCH in sort order; MIN/MAX are the first and last sorted
    out = r.cmd(b"SORT RETURN (MIN MAX COUNT ALL) (DISPLAYFROM) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "t") MIN 4 MAX 1 COUNT 4 ALL 4,2:3,1', out
    out = r.cmd(b"SORT RETURN (ALL) (SIZE) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "t") ALL 4,3,2,1', out
    out = r.cmd(b"UID SORT RETURN (ALL) (REVERSE SIZE) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "t") UID ALL 1:4', out
    # RFC 9394: a window of the results, from the start or the end
    out = r.cmd(b"SEARCH RETURN (PARTIAL 2:3) ALL")
    assert out[0] == b'* ESEARCH (TAG "t") PARTIAL (2:3 2:3)', out
    out = r.cmd(b"SEARCH RETURN (PARTIAL -1:-2 COUNT) ALL")
    assert out[0] == b'* ESEARCH (TAG "t") COUNT 4 PARTIAL (-1:-2 3:4)', out
    out = r.cmd(b"SORT RETURN (PARTIAL 1:2) (DISPLAYFROM) UTF-8 ALL")
    assert out[0] == b'* ESEARCH (TAG "t") PARTIAL (1:2 4,2)', out
    out = r.cmd(b"SEARCH RETURN (PARTIAL 10:20) ALL")
    assert out[0] == b'* ESEARCH (TAG "t") PARTIAL (10:20 NIL)', out
    assert r.cmd(b"SEARCH RETURN (PARTIAL 0:5) ALL")[-1].startswith(b"t BAD")
    assert r.cmd(b"SEARCH RETURN (PARTIAL 1:-5) ALL")[-1].startswith(b"t BAD")
    assert r.cmd(b"SEARCH RETURN (PARTIAL 1:5 ALL) ALL")[-1].startswith(b"t BAD")
    r.close()


def _dated(mid: str, subject: str, day: int, refs: str = "") -> bytes:
    head = f"From: b@example.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
    head += f"Date: {day:02d} Mar 2024 10:00:00 +0000\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    return (head + "\r\nx\r\n").encode()


def test_thread_refs_orders_threads_by_newest_message_without_subject_merging(imap_server):
    assert "THREAD=REFS" in _caps(imap_server)
    c = connect(imap_server)
    for raw in (
        _dated("a@x", "Plans", 1),
        _dated("b@x", "Lunch", 2),
        _dated("c@x", "Re: Plans", 3, "<a@x>"),
        _dated("d@x", "Plans", 4),  # same subject, no reference: its own thread in REFS
    ):
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")
    assert c.thread("REFERENCES", "UTF-8", "ALL") == ("OK", [b"((1 3)(4))(2)"])
    assert c.thread("REFS", "UTF-8", "ALL") == ("OK", [b"(2)(1 3)(4)"])
    c.logout()


def test_replace_appends_the_new_message_then_expunges_the_old(imap_server):
    # RFC 8508: REPLACE saves the new version (APPENDUID in an untagged OK) and expunges the old.
    assert "REPLACE" in _caps(imap_server)
    c = connect(imap_server)
    c.create("Drafts2")
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    for i in (1, 2):
        msg = message(i, subject=f"draft v{i}")
        r.send(b"a APPEND Drafts2 {%d+}\r\n" % len(msg) + msg + b"\r\n")
        assert r.until_tagged(b"a")[-1].startswith(b"a OK")
    r.cmd(b"SELECT Drafts2")
    new = message(3, subject="draft v3")
    r.send(b"t REPLACE 1 Drafts2 (\\Draft) {%d+}\r\n" % len(new) + new + b"\r\n")
    out = r.until_tagged(b"t")
    assert out[-1].startswith(b"t OK"), out
    ok = next(x for x in out if x.startswith(b"* OK [APPENDUID "))
    expunge = out.index(b"* 1 EXPUNGE")
    assert out.index(ok) < expunge, out
    subjects = r.cmd(b"FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    text = b"\n".join(subjects)
    assert b"draft v1" not in text and b"draft v2" in text and b"draft v3" in text, subjects
    # UID REPLACE of a UID that is not there: NO, nothing appended
    r.send(b"u UID REPLACE 99 Drafts2 {%d+}\r\n" % len(new) + new + b"\r\n")
    assert r.until_tagged(b"u")[-1].startswith(b"u NO"), "replacing nothing"
    assert r.cmd(b"STATUS Drafts2 (MESSAGES)")[0].endswith(b"(MESSAGES 2)")
    r.close()


def test_imap4rev2_after_enable(imap_server):
    # RFC 9051 appendix E: no \Recent or RECENT, SELECT sends a LIST of the mailbox and no
    # UNSEEN, SEARCH answers with ESEARCH, mailbox names are UTF-8, [CLOSED] on reselect.
    assert {"IMAP4REV1", "IMAP4REV2"} <= _caps(imap_server)  # imaplib upper-cases them
    c = connect(imap_server)
    assert c.append("INBOX", None, None, message(1))[0] == "OK"
    assert c.append("INBOX", None, None, message(2))[0] == "OK"
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    out = r.cmd(b"SELECT INBOX")
    assert b'* LIST () "/" INBOX' in out, out
    assert not any(x.endswith(b" RECENT") or b"[UNSEEN " in x for x in out), out
    assert b"\\Recent" not in b"".join(r.cmd(b"FETCH 1:* FLAGS")), "no \\Recent in IMAP4rev2"
    assert r.cmd(b"SEARCH ALL")[0] == b'* ESEARCH (TAG "t") ALL 1:2'
    assert r.cmd(b"UID SEARCH DELETED")[0] == b'* ESEARCH (TAG "t") UID'
    assert r.cmd('CREATE "Entwürfe"'.encode())[-1].startswith(b"t OK")
    out = r.cmd(b'LIST "" "Entw*"')
    assert out[0] == '* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode(), out
    out = r.cmd('SELECT "Entwürfe"'.encode())
    assert out[0] == b"* OK [CLOSED] Previous mailbox closed", out
    assert '* LIST () "/" "Entwürfe"'.encode() in out, out
    r.close()
    # a session that did not enable it keeps IMAP4rev1's behaviour
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"SELECT INBOX")
    assert any(x.endswith(b" RECENT") for x in out) and not any(b"* LIST" in x for x in out)
    assert r.cmd(b"SEARCH ALL")[0] == b"* SEARCH 1 2"
    assert b"Entw&APw-rfe" in b"".join(r.cmd(b'LIST "" "Entw*"'))
    r.close()


def test_catenate_builds_a_message_from_text_and_urls(imap_server):
    # RFC 4469: a message put together from literals and parts of messages already stored.
    assert "CATENATE" in _caps(imap_server)
    c = connect(imap_server)
    original = (
        b"From: bob@example.test\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n\r\nPDFDATA\r\n--b--\r\n"
    )
    assert c.append("INBOX", None, None, original)[0] == "OK"
    c.select("INBOX")
    uidvalidity = int(c.status("INBOX", "(UIDVALIDITY)")[1][0].split()[-1].rstrip(b")"))
    c.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    head = b'From: alice@example.test\r\nSubject: Fwd\r\nContent-Type: multipart/mixed; boundary="n"\r\n\r\n--n\r\n'
    mid = b"\r\n--n\r\n"
    tail = b"\r\n--n--\r\n"
    url = b"/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=2.MIME" % uidvalidity
    body_url = b"/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=2" % uidvalidity
    r.send(
        b"a APPEND INBOX CATENATE (TEXT {%d+}\r\n" % len(head)
        + head
        + b' URL "'
        + url
        + b'" URL "'
        + body_url
        + b'"'
        + b" TEXT {%d+}\r\n" % len(mid)
        + mid
        + b' URL "/INBOX/;UID=1/;SECTION=1/;PARTIAL=0.5"'
        + b" TEXT {%d+}\r\n" % len(tail)
        + tail
        + b")\r\n"
    )
    out = r.until_tagged(b"a")
    assert out[-1].startswith(b"a OK [APPENDUID "), out
    r.cmd(b"SELECT INBOX")
    r.send(b"x FETCH 2 BODY.PEEK[]\r\n")
    first = r.line()
    size = int(first[first.rindex(b"{") + 1 : -1])
    while len(r.buf) < size:
        r.buf += r.sock.recv(65536)
    built = r.buf[:size]
    r.buf = r.buf[size:]
    r.until_tagged(b"x")
    assert built == (
        head + b"Content-Type: application/pdf\r\n\r\n" + b"PDFDATA" + mid + b"first" + tail
    ), built
    # a URL that does not resolve: NO [BADURL], nothing appended
    for bad in (b"/INBOX;UIDVALIDITY=1/;UID=1", b"/INBOX/;UID=99", b"/Nope/;UID=1"):
        r.send(b'b APPEND INBOX CATENATE (URL "' + bad + b'")\r\n')
        answer = r.until_tagged(b"b")[-1]
        assert answer.startswith(b'b NO [BADURL "' + bad + b'"]'), answer
    assert r.cmd(b"STATUS INBOX (MESSAGES)")[0].endswith(b"(MESSAGES 2)")
    r.close()
