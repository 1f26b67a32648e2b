"""Exact RFC behaviour that independent conformance scripts check, over a real socket."""

from __future__ import annotations

import base64
import re

from tests.imap.conftest import Raw, append_n, connect, message, selected


def _inbox_of(imap_server, n: int) -> Raw:
    """A raw session with INBOX selected, after `n` messages were appended to it."""
    c = connect(imap_server)
    append_n(c, n)
    c.logout()
    return selected(imap_server)


def test_open_bracket_is_an_atom_char_outside_fetch_sections(imap_server):
    # RFC 3501 §9: "[" is an ATOM-CHAR; only "]" is a resp-special.
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"SELECT foo[bar")
    assert out[-1].startswith(b"t NO "), out
    assert r.cmd(b"CREATE foo[bar")[-1].startswith(b"t OK"), "CREATE foo[bar"
    out = r.cmd(b'LIST "" foo[%')
    assert len(out) == 2 and out[0].startswith(b"* LIST ("), out
    assert out[0].endswith((b' "foo[bar"', b" foo[bar")), out
    assert out[-1].startswith(b"t OK"), out
    out = r.cmd(b"SELECT foo[bar")
    assert out[-1].startswith(b"t OK"), out
    # the session stays usable, and FETCH sections keep their meaning
    r.cmd(b"SELECT INBOX")
    r.send(b"a APPEND INBOX {%d+}\r\n" % len(message(1)) + message(1) + b"\r\n")
    assert r.until_tagged(b"a")[-1].startswith(b"a OK")
    r.cmd(b"SELECT INBOX")
    out = r.cmd(b"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert out[-1].startswith(b"t OK"), out
    assert b"BODY[HEADER.FIELDS (SUBJECT)]" in out[0], out
    out = r.cmd(b"FETCH 1 BODY.PEEK[HEADER")
    assert out[-1].startswith(b"t BAD"), out
    r.close()


def test_mailbox_named_with_brackets_round_trips_through_imaplib(imap_server):
    c = connect(imap_server)
    assert c.create("[Gmail]/Sent")[0] == "OK"
    typ, data = c.list('""', "[Gmail]/*")
    assert typ == "OK" and any(b"[Gmail]/Sent" in d for d in data), data
    assert c.select("[Gmail]/Sent")[0] == "OK"
    append_n(c, 1, "[Gmail]/Sent")
    c.logout()


def _recent(lines: list[bytes]) -> int:
    (n,) = [int(x.split()[1]) for x in lines if x.endswith(b" RECENT")]
    return n


def test_append_with_flags_is_recent_and_examine_reports_without_clearing(imap_server):
    # RFC 3501 §2.3.2: \Recent is set on a message new to the mailbox, however it came and
    # whatever flags APPEND gave it; §6.3.2: EXAMINE does not take it away.
    a = connect(imap_server)
    assert a.append("INBOX", r"(\Seen)", None, message(1))[0] == "OK"
    assert a.append("INBOX", "($Label1)", None, message(2))[0] == "OK"
    a.logout()
    r = Raw(imap_server.port("imap"))
    r.login()
    assert _recent(r.cmd(b"EXAMINE INBOX")) == 2
    out = r.cmd(b"FETCH 1:* FLAGS")
    assert b"\\Recent" in out[0] and b"\\Seen" in out[0], out
    assert b"\\Recent" in out[1] and b"$Label1" in out[1], out
    assert _recent(r.cmd(b"EXAMINE INBOX")) == 2, "EXAMINE must not clear \\Recent"
    assert _recent(r.cmd(b"SELECT INBOX")) == 2
    other = Raw(imap_server.port("imap"))
    other.login()
    assert _recent(other.cmd(b"SELECT INBOX")) == 0, "one session only reports \\Recent"
    assert b"\\Recent" not in other.cmd(b"FETCH 1:* FLAGS")[0]
    other.close()
    r.close()


def test_move_within_one_mailbox_expunges_before_exists(imap_server):
    r = _inbox_of(imap_server, 3)
    out = r.cmd(b"UID MOVE 2 INBOX")
    assert out[-1].startswith(b"t OK"), out
    kinds = [x.split()[2] for x in out if x.startswith(b"* ") and x.split()[1].isdigit()]
    assert [k for k in kinds if k in (b"EXPUNGE", b"EXISTS")] == [b"EXPUNGE", b"EXISTS"], out
    assert b"* 2 EXPUNGE" in out and b"* 3 EXISTS" in out, out
    fetched = r.cmd(b"FETCH 1:* UID")
    assert [x.split()[-1] for x in fetched[:-1]] == [b"1)", b"3)", b"4)"], fetched
    r.close()


def _threaded(mid: str, refs: str = "", subject: str = "Thread") -> bytes:
    head = f"From: bob@example.test\r\nSubject: {subject}\r\nMessage-ID: <{mid}>\r\n"
    head += "Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    return (head + "\r\nbody\r\n").encode()


def test_thread_references_breaks_a_guessed_parent_that_would_loop(imap_server):
    # RFC 5256 §3 REFERENCES (1)(C): A's References put n under p and d under n; n's own
    # References name d, its own descendant: the guessed link to p is broken and no loop is
    # made, so n heads a thread of its own.
    c = connect(imap_server)
    for raw in (
        _threaded("p@x", subject="P"),
        _threaded("a@x", "<p@x> <n@x> <d@x>", subject="A"),
        _threaded("n@x", "<d@x>", subject="N"),
    ):
        assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")
    typ, data = c.thread("REFERENCES", "UTF-8", "ALL")
    assert typ == "OK"
    assert data == [b"(1)(3 2)"], data
    c.logout()


def test_list_extended_selection_rules_and_subscriptions_outliving_delete(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    # RFC 5258 §3.1: RECURSIVEMATCH alone (or with only REMOTE) is BAD.
    assert r.cmd(b'LIST (RECURSIVEMATCH) "" "*"')[-1].startswith(b"t BAD")
    assert r.cmd(b'LIST (RECURSIVEMATCH REMOTE) "" "*"')[-1].startswith(b"t BAD")
    for name in (b"Fruit", b"Fruit/Apple", b"Fruit/Peach", b"Vegetable", b"Vegetable/Leek"):
        assert r.cmd(b"CREATE " + name)[-1].startswith(b"t OK"), name
    for name in (b"Fruit", b"Fruit/Peach", b"Vegetable/Leek"):
        assert r.cmd(b"SUBSCRIBE " + name)[-1].startswith(b"t OK"), name
    # RFC 3501 §6.3.6: DELETE leaves the subscription alone.
    assert r.cmd(b"DELETE Fruit/Peach")[-1].startswith(b"t OK")
    out = r.cmd(b'LIST (SUBSCRIBED) "" "Fruit/*"')
    assert out[:-1] == [b'* LIST (\\Subscribed \\NonExistent) "/" Fruit/Peach'] or out[:-1] == [
        b'* LIST (\\NonExistent \\Subscribed) "/" Fruit/Peach'
    ], out
    lsub = r.cmd(b'LSUB "" "Fruit/*"')
    assert any(x.endswith(b" Fruit/Peach") for x in lsub), lsub
    # RFC 5258 §3.5: CHILDINFO only for a parent that does not itself match.
    out = r.cmd(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    by_name = {x.split(b'"/" ')[1].split(b" ")[0]: x for x in out[:-1]}
    assert b"CHILDINFO" not in by_name[b"Fruit"], out
    assert b'("CHILDINFO" ("SUBSCRIBED"))' in by_name[b"Vegetable"], out
    assert b"\\Subscribed" not in by_name[b"Vegetable"], out
    r.close()


def test_condstore_enabling_command_reports_highestmodseq_and_esearch_min_max_modseq(
    imap_server,
):
    r = _inbox_of(imap_server, 3)
    r.cmd(b"STORE 3 +FLAGS (\\Flagged)")
    r.cmd(b"STORE 1 +FLAGS (\\Answered)")  # message 1 now has the highest MODSEQ
    out = r.cmd(b"FETCH 2 (FLAGS MODSEQ)")
    # RFC 7162 §3.1: the first CONDSTORE-enabling command while selected reports it first
    assert out[0].startswith(b"* OK [HIGHESTMODSEQ "), out
    highest = int(out[0].split()[3].rstrip(b"]"))
    assert b"MODSEQ (" in out[1], out
    again = r.cmd(b"FETCH 2 (FLAGS MODSEQ)")
    assert not any(x.startswith(b"* OK [HIGHESTMODSEQ") for x in again), again
    mods = {}
    for line in r.cmd(b"FETCH 1:* MODSEQ")[:-1]:
        mods[int(line.split()[1])] = int(line.split(b"MODSEQ (")[1].split(b")")[0])
    assert mods[1] == highest
    out = r.cmd(b"SEARCH RETURN (MAX) MODSEQ 1")
    assert out[0].endswith(b"MAX 3 MODSEQ %d" % mods[3]), (out, mods)
    out = r.cmd(b"SEARCH RETURN (MIN MAX) MODSEQ 1")
    assert out[0].endswith(b"MIN 1 MAX 3 MODSEQ %d" % max(mods[1], mods[3])), out
    out = r.cmd(b"SEARCH RETURN (COUNT) MODSEQ 1")
    assert out[0].endswith(b"COUNT 3 MODSEQ %d" % highest), out
    r.close()


def test_store_unchangedsince_as_first_condstore_command_reports_highestmodseq(imap_server):
    r = _inbox_of(imap_server, 1)
    out = r.cmd(b"STORE 1 (UNCHANGEDSINCE 100000) +FLAGS (\\Seen)")
    assert out[0].startswith(b"* OK [HIGHESTMODSEQ "), out
    assert out[-1].startswith(b"t OK"), out
    r.close()


def test_quoted_printable_trailing_space_and_padded_soft_breaks(imap_server):
    # RFC 2045 §6.7 rules 3 and 5: trailing whitespace on an encoded line is removed, and "="
    # followed only by whitespace is a soft line break.
    raw = (
        b"From: bob@example.test\r\nSubject: qp\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"trailing   \r\nsplendid=  \r\nword=\t\r\nhere=3D1 \r\n"
    )
    c = connect(imap_server)
    assert c.append("INBOX", None, None, raw)[0] == "OK"
    c.select("INBOX")
    typ, data = c.fetch("1", "(BINARY.PEEK[1] BINARY.PEEK[])")
    assert typ == "OK"
    parts = {
        re.search(rb"BINARY\[[0-9.]*\]", d[0]).group(): d[1] for d in data if isinstance(d, tuple)
    }
    assert parts[b"BINARY[1]"] == b"trailing\r\nsplendidwordhere=1\r\n", parts
    assert parts[b"BINARY[]"].endswith(b"\r\n\r\ntrailing\r\nsplendidwordhere=1\r\n"), parts
    assert c.search(None, "BODY", "splendidwordhere")[1] == [b"1"]
    c.logout()


def test_new_keyword_is_announced_before_the_fetch_that_shows_it(imap_server):
    # RFC 3501 §7.2.6: FLAGS (and PERMANENTFLAGS) name every keyword a FETCH may show.
    c = connect(imap_server)
    append_n(c, 2)
    c.logout()
    a = Raw(imap_server.port("imap"))
    a.login()
    a.cmd(b"SELECT INBOX")
    b = Raw(imap_server.port("imap"))
    b.login()
    b.cmd(b"SELECT INBOX")
    out = a.cmd(b"STORE 1 +FLAGS ($Forwarded)")
    flags_at = next(i for i, x in enumerate(out) if x.startswith(b"* FLAGS ("))
    fetch_at = next(i for i, x in enumerate(out) if b" FETCH " in x)
    assert flags_at < fetch_at and b"$Forwarded" in out[flags_at], out
    assert (
        out[flags_at + 1].startswith(b"* OK [PERMANENTFLAGS (")
        and b"$Forwarded" in (out[flags_at + 1])
    ), out
    # the other session hears of it before the FETCH of the change
    out = b.cmd(b"NOOP")
    flags_at = next(i for i, x in enumerate(out) if x.startswith(b"* FLAGS ("))
    fetch_at = next(i for i, x in enumerate(out) if b" FETCH " in x)
    assert flags_at < fetch_at and b"$Forwarded" in out[flags_at], out
    # only once
    out = a.cmd(b"STORE 2 +FLAGS ($Forwarded)")
    assert not any(x.startswith(b"* FLAGS") for x in out), out
    # a keyword arriving with a new message shows up in FLAGS before FETCH FLAGS shows it
    d = connect(imap_server)
    assert d.append("INBOX", "($Label9)", None, message(9))[0] == "OK"
    d.logout()
    b.cmd(b"NOOP")
    out = b.cmd(b"FETCH 3 FLAGS")
    flags_at = next(i for i, x in enumerate(out) if x.startswith(b"* FLAGS ("))
    fetch_at = next(i for i, x in enumerate(out) if b" FETCH " in x)
    assert flags_at < fetch_at and b"$Label9" in out[flags_at], out
    a.close()
    b.close()


def test_fetch_of_a_message_expunged_by_another_session_answers_ok(imap_server):
    # RFC 2180 §4.1: until the EXPUNGE can be announced, what is still known is returned.
    r = _inbox_of(imap_server, 3)
    assert r.cmd(b"FETCH 2 ENVELOPE")[-1].startswith(b"t OK")  # now in the parsed cache
    other = connect(imap_server)
    other.select("INBOX")
    other.store("2", "+FLAGS", "(\\Deleted)")
    other.expunge()
    other.logout()
    out = r.cmd(b"FETCH 1:3 (UID FLAGS ENVELOPE)")
    assert out[-1] == b"t OK FETCH completed", out
    fetched = [x for x in out if b" FETCH (" in x]
    assert len(fetched) == 3 and b"UID 2 " in fetched[1] and b"ENVELOPE (" in fetched[1], out
    assert b"Test message 2" in fetched[1], out
    out = r.cmd(b"UID FETCH 1:3 (BODY.PEEK[])")
    assert out[-1] == b"t OK UID FETCH completed", out
    out += r.cmd(b"NOOP")  # UID FETCH may already carry the EXPUNGE (RFC 3501 §7.4.1)
    assert out.count(b"* 2 EXPUNGE") == 1, out
    r.close()


def _message_ids(c, folder: str) -> list[bytes]:
    c.select(folder, readonly=True)
    typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    if typ != "OK" or data == [None]:
        return []
    return [d[1].strip() for d in data if isinstance(d, tuple)]


def test_concurrent_moves_move_each_message_once_and_keep_acknowledged_flags(imap_server):
    # Two sessions MOVE the same messages while a third sets \Deleted on them, all pipelined
    # so that their commands overlap in the server: a message lands in the target once, and a
    # STORE answered OK shows on the moved copy (or the STORE says the message is gone).
    rounds = 25
    c = connect(imap_server)
    c.create("Target")
    append_n(c, rounds)
    c.logout()
    movers = [Raw(imap_server.port("imap")) for _ in range(2)]
    flagger = Raw(imap_server.port("imap"))
    for r in movers + [flagger]:
        r.login()
        r.cmd(b"SELECT INBOX")
    flag_ok: set[int] = set()
    for uid in range(1, rounds + 1):
        for i, r in enumerate(movers):
            r.send(b"m%d UID MOVE %d Target\r\n" % (i, uid))
        flagger.send(b"f UID STORE %d +FLAGS (\\Deleted)\r\n" % uid)
        for i, r in enumerate(movers):
            assert r.until_tagged(b"m%d" % i)[-1].startswith(b"m%d OK" % i)
        answer = flagger.until_tagged(b"f")[-1]
        assert answer.startswith((b"f OK", b"f NO [EXPUNGEISSUED]")), answer
        if answer.startswith(b"f OK"):
            flag_ok.add(uid)
    for r in movers + [flagger]:
        r.close()
    c = connect(imap_server)
    ids = _message_ids(c, "Target")
    assert len(ids) == rounds and len(set(ids)) == rounds, ids
    assert _message_ids(c, "INBOX") == []
    c.select("Target", readonly=True)
    typ, data = c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    deleted = {
        int(re.search(rb"Test message (\d+)", d[1]).group(1))
        for d in data
        if isinstance(d, tuple) and b"\\Deleted" in d[0]
    }
    assert flag_ok <= deleted, (flag_ok, deleted)
    c.logout()


def _binary_message(payload: bytes) -> bytes:
    return (
        b"From: bob@example.test\r\nSubject: binary\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: binary\r\n\r\n" + payload + b"\r\n--b1--\r\n"
    )


def _fetch_literal(r: Raw, command: bytes) -> bytes:
    r.send(b"x " + command + b"\r\n")
    head = r.line()
    size = int(head[head.rindex(b"{") + 1 : -1])
    while len(r.buf) < size:
        r.buf += r.sock.recv(1 << 20)
    data, r.buf = r.buf[:size], r.buf[size:]
    rest = r.until_tagged(b"x")
    assert rest[-1].startswith(b"x OK"), rest
    return data


def test_binary_append_comes_back_byte_for_byte(imap_server):
    # RFC 3516 §4.3: what APPEND received as a literal8 is what FETCH BINARY returns.
    small = b"\x00\x01bare\rcr bare\nlf crlf\r\n\xff\xfe" * 50
    big = bytes(range(256)) * 5000 + b"\r\rend\n"  # spooled to disk on its way in
    r = Raw(imap_server.port("imap"))
    r.login()
    for payload in (small, big):
        msg = _binary_message(payload)
        r.send(b"a APPEND INBOX ~{%d+}\r\n" % len(msg) + msg + b"\r\n")
        assert r.until_tagged(b"a")[-1].startswith(b"a OK"), payload[:10]
    r.cmd(b"SELECT INBOX")
    for seq, payload in ((1, small), (2, big)):
        assert _fetch_literal(r, b"FETCH %d BINARY.PEEK[2]" % seq) == payload
        out = r.cmd(b"FETCH %d BINARY.SIZE[2]" % seq)
        assert b"BINARY.SIZE[2] %d" % len(payload) in out[0], out
        encoded = _fetch_literal(r, b"FETCH %d BODY.PEEK[2]" % seq)
        assert base64.b64decode(encoded) == payload
        assert _fetch_literal(r, b"FETCH %d BINARY.PEEK[1]" % seq) == b"see attached"
    r.close()
