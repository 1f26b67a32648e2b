"""CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): searches with RETURN (UPDATE) report how
their result changes (ADDTO / REMOVEFROM) as this or another session changes the mailbox,
over real sockets with two sessions."""

from __future__ import annotations

import imaplib
import time

import pytest

from tests.imap.conftest import IMAP_ONLY, USER, Raw, append_n, connect, message, selected


def _esearch(lines: list[bytes], tag: str) -> list[bytes]:
    mark = b'* ESEARCH (TAG "' + tag.encode() + b'")'
    return [line for line in lines if line.startswith(mark)]


def _idle(r: Raw) -> list[bytes]:
    """Start IDLE; the updates sent before its continuation."""
    r.send(b"i IDLE\r\n")
    r.sock.settimeout(5)
    return _lines_until(r, b"+ idling")[:-1]


def _lines_until(r: Raw, want: bytes, limit: int = 20) -> list[bytes]:
    out = []
    for _ in range(limit):
        out.append(r.line())
        if out[-1].startswith(want):
            return out
    raise AssertionError(out)


def _views(srv, folder: str = "INBOX"):
    f = srv.services.store.mailbox(USER).folder(folder)
    return [cb.__self__ for cb in list(f._listeners) if hasattr(cb, "__self__")]


def test_capabilities_include_context_search_and_sort(imap_server):
    r = selected(imap_server)
    caps = r.cmd(b"CAPABILITY")[0].split()
    assert b"CONTEXT=SEARCH" in caps and b"CONTEXT=SORT" in caps and b"ESORT" in caps


def test_flag_change_by_another_session_removes_and_adds_rfc5267_4_3(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    r = selected(imap_server)
    out = r.cmd(b"UID SEARCH RETURN (UPDATE COUNT) UNSEEN", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID COUNT 3'
    assert out[-1].startswith(b"s1 OK")
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Seen)")
    out = r.cmd(b"NOOP")
    # The FETCH that caused it, then the result's change at the position it had.
    assert out[0].startswith(b"* 2 FETCH")
    assert out[1] == b'* ESEARCH (TAG "s1") UID REMOVEFROM (2 2)'
    c.store("2", "-FLAGS", "(\\Seen)")
    out = r.cmd(b"NOOP")
    assert out[1] == b'* ESEARCH (TAG "s1") UID ADDTO (2 2)'
    # A change that leaves the result as it was says nothing about it.
    c.store("3", "+FLAGS", "(\\Flagged)")
    out = r.cmd(b"NOOP")
    assert _esearch(out, "s1") == []


def test_own_store_reports_after_its_fetch(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    r = selected(imap_server)
    r.cmd(b"SEARCH RETURN (UPDATE) FLAGGED", b"s1")
    out = r.cmd(b"STORE 1,3 +FLAGS (\\Flagged)")
    assert out[0].startswith(b"* 1 FETCH") and out[1].startswith(b"* 3 FETCH")
    # SEARCH (not UID SEARCH): message numbers; 1 and 3 land at positions 1 and 2.
    assert out[2] == b'* ESEARCH (TAG "s1") ADDTO (1 1,3)'
    out = r.cmd(b"STORE 1:3 -FLAGS (\\Flagged)")
    assert b'* ESEARCH (TAG "s1") REMOVEFROM (1 1,3)' in out


def test_expunge_by_another_session_removes_before_the_expunge_rfc5267_4_3_4(imap_server):
    c = connect(imap_server)
    append_n(c, 4)
    r = selected(imap_server)
    r.cmd(b"SEARCH RETURN (UPDATE) ALL", b"s1")
    c.select("INBOX")
    c.store("2:3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    out = r.cmd(b"NOOP")
    rm = out.index(b'* ESEARCH (TAG "s1") REMOVEFROM (2 2:3)')
    assert out.index(b"* 3 EXPUNGE") > rm and out.index(b"* 2 EXPUNGE") > rm


def test_expunge_is_reported_to_the_context_even_where_expunge_may_not_be_sent(imap_server):
    """RFC 5267 appendix A.3: REMOVEFROM may come at once; the EXPUNGE waits for a command
    that allows it (FETCH does not, RFC 3501 §7.4.1)."""
    c = connect(imap_server)
    append_n(c, 3)
    r = selected(imap_server)
    r.cmd(b"UID SEARCH RETURN (UPDATE) ALL", b"s1")
    c.select("INBOX")
    c.store("3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    out = r.cmd(b"FETCH 1 FLAGS")
    assert b'* ESEARCH (TAG "s1") UID REMOVEFROM (3 3)' in out
    assert not any(line.endswith(b"EXPUNGE") for line in out)
    out = r.cmd(b"NOOP")
    assert b"* 3 EXPUNGE" in out and _esearch(out, "s1") == []


def test_own_expunge_removes_first(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    r = selected(imap_server)
    r.cmd(b"SEARCH RETURN (UPDATE) ALL", b"s1")
    r.cmd(b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    out = r.cmd(b"EXPUNGE")
    assert out[:2] == [b'* ESEARCH (TAG "s1") REMOVEFROM (2 2)', b"* 2 EXPUNGE"]


def test_append_by_another_session_adds_after_exists_rfc5267_4_3_3(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    r.cmd(b"SEARCH RETURN (UPDATE) UNSEEN", b"s1")
    c.append("INBOX", None, None, message(3))
    c.append("INBOX", "(\\Seen)", None, message(4))
    out = r.cmd(b"NOOP")
    assert out.index(b"* 4 EXISTS") < out.index(b'* ESEARCH (TAG "s1") ADDTO (3 3)')
    assert len(_esearch(out, "s1")) == 1


def test_cancelupdate_stops_the_updates_rfc5267_4_3_5(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    r.cmd(b"UID SEARCH RETURN (UPDATE) UNSEEN", b"s1")
    r.cmd(b"UID SEARCH RETURN (UPDATE) SEEN", b"s2")
    out = r.cmd(b'CANCELUPDATE "s1"')
    assert out[-1].startswith(b"t OK")
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Seen)")
    out = r.cmd(b"NOOP")
    assert _esearch(out, "s1") == []
    assert _esearch(out, "s2") == [b'* ESEARCH (TAG "s2") UID ADDTO (1 1)']
    # The tag is free again.
    out = r.cmd(b"UID SEARCH RETURN (UPDATE COUNT) UNSEEN", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID COUNT 1'
    assert r.cmd(b"CANCELUPDATE")[-1].startswith(b"t BAD")


def test_updates_end_with_the_selection(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    r.cmd(b"UID SEARCH RETURN (UPDATE) UNSEEN", b"s1")
    r.cmd(b"SELECT INBOX")
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Seen)")
    assert _esearch(r.cmd(b"NOOP"), "s1") == []
    assert all(not v.contexts.searches for v in _views(imap_server))


def test_tag_reuse_of_a_live_updating_search_is_bad_rfc5267_4_3(imap_server):
    r = selected(imap_server)
    assert r.cmd(b"UID SEARCH RETURN (UPDATE) ALL", b"B01")[-1].startswith(b"B01 OK")
    out = r.cmd(b"SORT RETURN (UPDATE) (ARRIVAL) UTF-8 FLAGGED", b"B01")
    assert out[-1].startswith(b"B01 BAD")


def test_limit_answers_noupdate_and_still_the_result_rfc5267_4_3_1(server_factory):
    srv = server_factory(
        auth={"plaintext": "loopback"}, imap={"max_updating_searches": 2}, listen=IMAP_ONLY
    )
    srv.add_user(USER)
    c = connect(srv)
    append_n(c, 2)
    r = selected(srv)
    r.cmd(b"SEARCH RETURN (UPDATE) ALL", b"a")
    r.cmd(b"SEARCH RETURN (UPDATE) ALL", b"b")
    out = r.cmd(b"UID SORT RETURN (UPDATE COUNT) (ARRIVAL) UTF-8 ALL", b"c")
    assert b'* ESEARCH (TAG "c") UID COUNT 2' in out
    assert b'* NO [NOUPDATE "c"]' in b"\n".join(out)
    assert out[-1].startswith(b"c OK")
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    out = r.cmd(b"NOOP")
    assert _esearch(out, "c") == []
    assert len(_esearch(out, "a")) == 1 and len(_esearch(out, "b")) == 1
    # Cancelling one makes room again.
    r.cmd(b'CANCELUPDATE "a"')
    out = r.cmd(b"UID SEARCH RETURN (UPDATE) ALL", b"d")
    assert not any(b"NOUPDATE" in line for line in out)


def test_idle_delivers_addto_and_removefrom(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    r.cmd(b"UID SEARCH RETURN (UPDATE) FLAGGED", b"s1")
    _idle(r)
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Flagged)")
    out = _lines_until(r, b"* ESEARCH")
    assert out[-1] == b'* ESEARCH (TAG "s1") UID ADDTO (1 2)'
    c.append("INBOX", "(\\Flagged)", None, message(3))
    out = _lines_until(r, b"* ESEARCH")
    assert b"* 3 EXISTS" in out and out[-1] == b'* ESEARCH (TAG "s1") UID ADDTO (2 3)'
    c.store("2", "+FLAGS", "(\\Deleted)")
    c.expunge()
    out = _lines_until(r, b"* 2 EXPUNGE")
    assert b'* ESEARCH (TAG "s1") UID REMOVEFROM (1 2)' in out
    r.send(b"DONE\r\n")
    assert _lines_until(r, b"i ")[-1] == b"i OK IDLE completed"


def test_header_search_is_updated_from_the_thread_pool(imap_server):
    c = connect(imap_server)
    c.append("INBOX", None, None, message(1, subject="needle one"))
    c.append("INBOX", None, None, message(2, subject="hay"))
    r = selected(imap_server)
    out = r.cmd(b"UID SEARCH RETURN (UPDATE ALL) SUBJECT needle UNSEEN", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID ALL 1'
    _idle(r)
    c.append("INBOX", None, None, message(3, subject="another needle"))
    c.append("INBOX", None, None, message(4, subject="more hay"))
    out = _lines_until(r, b'* ESEARCH (TAG "s1")')
    assert out[-1] == b'* ESEARCH (TAG "s1") UID ADDTO (2 3)'
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Seen)")
    out = _lines_until(r, b'* ESEARCH (TAG "s1")')
    assert out[-1] == b'* ESEARCH (TAG "s1") UID REMOVEFROM (1 1)'
    r.send(b"DONE\r\n")
    _lines_until(r, b"i OK")


def test_sort_context_positions_follow_the_sort_order_rfc5267_4_3_3(imap_server):
    c = connect(imap_server)
    for i, subject in enumerate(["bravo", "delta", "foxtrot"], 1):
        c.append("INBOX", None, None, message(i, subject=subject))
    r = selected(imap_server)
    out = r.cmd(b"UID SORT RETURN (UPDATE ALL) (REVERSE SUBJECT) UTF-8 UNSEEN", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID ALL 3,2,1'
    c.append("INBOX", None, None, message(4, subject="charlie"))
    c.append("INBOX", None, None, message(5, subject="golf"))
    out = _idle(r)
    if not _esearch(out, "s1"):  # evaluated in the thread pool: may come while idling
        out = _lines_until(r, b'* ESEARCH (TAG "s1")')
    # golf goes first, charlie between delta and bravo: foxtrot,delta,... -> 5,3,2,4,1
    assert out[-1] == b'* ESEARCH (TAG "s1") UID ADDTO (1 5 4 4)'
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Seen)")
    out = _lines_until(r, b'* ESEARCH (TAG "s1")')
    assert out[-1] == b'* ESEARCH (TAG "s1") UID REMOVEFROM (3 2)'
    r.send(b"DONE\r\n")
    _lines_until(r, b"i OK")
    # A new search agrees with the positions the updates implied.
    out = r.cmd(b"UID SORT RETURN (ALL) (REVERSE SUBJECT) UTF-8 UNSEEN")
    assert out[0] == b'* ESEARCH (TAG "t") UID ALL 5,3:4,1'


def test_sort_by_arrival_is_updated_on_the_reactor(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    r.cmd(b"SORT RETURN (UPDATE) (REVERSE ARRIVAL) UTF-8 ALL", b"s1")
    c.append("INBOX", None, imaplib.Time2Internaldate(time.time() + 3600), message(3))
    c.append("INBOX", None, imaplib.Time2Internaldate(time.time() - 86400), message(4))
    out = r.cmd(b"NOOP")
    # Newest first: 3 at the top, 4 (a day old) after the two already there.
    assert out.index(b"* 4 EXISTS") < out.index(b'* ESEARCH (TAG "s1") ADDTO (1 3 4 4)')


def test_partial_with_update_reports_every_change_rfc5267_4_4(imap_server):
    c = connect(imap_server)
    append_n(c, 5)
    r = selected(imap_server)
    out = r.cmd(b"UID SEARCH RETURN (PARTIAL 1:2 UPDATE) UNDELETED", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID PARTIAL (1:2 1:2)'
    c.select("INBOX")
    c.store("5", "+FLAGS", "(\\Deleted)")
    out = r.cmd(b"NOOP")
    assert b'* ESEARCH (TAG "s1") UID REMOVEFROM (5 5)' in out
    out = r.cmd(b"UID SEARCH RETURN (PARTIAL -1:-2) UNDELETED")
    assert out[0] == b'* ESEARCH (TAG "t") UID PARTIAL (-1:-2 3:4)'


def test_message_numbers_in_the_program_are_fixed_when_received_rfc5267_4_3(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    r = selected(imap_server)
    r.cmd(b"UID SEARCH RETURN (UPDATE) UID 2:* UNFLAGGED", b"s1")
    c.append("INBOX", None, None, message(4))
    out = r.cmd(b"NOOP")
    assert b"* 4 EXISTS" in out and _esearch(out, "s1") == []
    c.select("INBOX")
    c.store("3", "+FLAGS", "(\\Flagged)")
    assert b'* ESEARCH (TAG "s1") UID REMOVEFROM (2 3)' in r.cmd(b"NOOP")
    # Message numbers name the messages they named; a UID range without `*` names new UIDs.
    r.cmd(b"SEARCH RETURN (UPDATE) 1:2 UNSEEN", b"s2")
    r.cmd(b"UID SEARCH RETURN (UPDATE) UID 1:100 UNSEEN", b"s3")
    c.store("1", "+FLAGS", "(\\Seen)")
    c.append("INBOX", None, None, message(5))
    out = r.cmd(b"NOOP")
    assert _esearch(out, "s2") == [b'* ESEARCH (TAG "s2") REMOVEFROM (1 1)']
    assert _esearch(out, "s3") == [
        b'* ESEARCH (TAG "s3") UID REMOVEFROM (1 1)',
        b'* ESEARCH (TAG "s3") UID ADDTO (4 5)',
    ]


def test_context_alone_is_a_hint_and_update_alone_returns_no_data(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = selected(imap_server)
    out = r.cmd(b"SEARCH RETURN (CONTEXT COUNT) ALL", b"a")
    assert out[0] == b'* ESEARCH (TAG "a") COUNT 2'
    out = r.cmd(b"SEARCH RETURN (UPDATE) ALL", b"b")
    assert out[0] == b'* ESEARCH (TAG "b")'
    assert r.cmd(b"SEARCH RETURN () ALL", b"c")[0] == b'* ESEARCH (TAG "c") ALL 1:2'


def test_unrelated_flag_change_tests_only_that_message(imap_server):
    """10,000 messages with an updating search: a flag change evaluates one message."""
    root = imap_server.services.store.path_for(USER)
    body = message(1).replace(b"\r\n", b"\n")
    for i in range(10_000):
        name = f"{1700000000 + i}.M{i}P1.host,S={len(body)}:2,"
        (root / "cur" / name).write_bytes(body)
    c = connect(imap_server)
    r = selected(imap_server)
    out = r.cmd(b"UID SEARCH RETURN (UPDATE COUNT) FLAGGED", b"s1")
    assert out[0] == b'* ESEARCH (TAG "s1") UID COUNT 0'
    out = r.cmd(b"UID SEARCH RETURN (UPDATE COUNT) SUBJECT needle", b"s2")
    assert out[0] == b'* ESEARCH (TAG "s2") UID COUNT 0'
    (view,) = [v for v in _views(imap_server) if v.contexts.searches]
    s1, s2 = view.contexts.searches["s1"], view.contexts.searches["s2"]
    c.select("INBOX")
    c.store("5000", "+FLAGS", "(\\Seen)")
    c.store("6000", "+FLAGS", "(\\Flagged)")
    out = r.cmd(b"NOOP")
    assert _esearch(out, "s1") == [b'* ESEARCH (TAG "s1") UID ADDTO (1 6000)']
    deadline = time.monotonic() + 5
    while s2.evaluations < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s1.evaluations == 2 and s2.evaluations == 2


@pytest.mark.parametrize("uid", [False, True])
def test_imapclient_reads_the_updates_while_idling(imap_server, uid):
    """IMAPClient (the library mail tools build on) parses the ESEARCH updates IDLE brings;
    the updating search itself goes through its imaplib connection, which has no RETURN."""
    from imapclient import IMAPClient

    from tests.conftest import DEFAULT_PASSWORD

    c = connect(imap_server)
    append_n(c, 3)
    client = IMAPClient("127.0.0.1", port=imap_server.port("imap"), ssl=False, timeout=10)
    client.login(USER, DEFAULT_PASSWORD)
    client.select_folder("INBOX")
    assert b"CONTEXT=SEARCH" in client.capabilities()
    args = ("SEARCH", "RETURN", "(UPDATE)", "UNSEEN")
    typ, _ = client._imap.xatom("UID", *args) if uid else client._imap.xatom(*args)
    assert typ == "OK"
    client.idle()
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Seen)")
    seen = []
    deadline = time.monotonic() + 5
    while not any(r[0] == b"ESEARCH" for r in seen if isinstance(r, tuple)):
        assert time.monotonic() < deadline, seen
        seen += client.idle_check(timeout=1)
    client.idle_done()
    (update,) = [r for r in seen if isinstance(r, tuple) and r[0] == b"ESEARCH"]
    assert update[2:] == ((b"UID",) if uid else ()) + (b"REMOVEFROM", (2, 2))
    client.logout()


def test_updating_sort_orders_as_plain_sort_does(imap_server):
    """The order an updating SORT keeps (one key per message) is the order SORT sends."""
    c = connect(imap_server)
    people = ["Zed <z@x.test>", "amy <a@y.test>", "Bob <b@x.test>", "<c@z.test>", "amy <d@y.test>"]
    dates = ["Mon, 7 Feb 1994 21:52:25 -0800", "Tue, 1 Jan 2019 10:00:00 +0000", "garbage"]
    for i in range(15):
        extra = f"Cc: {people[(i * 3) % 5]}\r\n"
        msg = message(i, subject=["Re: b", "a", "[x] c", "Fwd: a", "B"][i % 5], extra=extra)
        msg = msg.replace(b"From: Bob <bob@example.test>", f"From: {people[i % 5]}".encode())
        msg = msg.replace(b"Mon, 7 Feb 1994 21:52:25 -0800", dates[i % 3].encode())
        c.append("INBOX", None, None, msg + b"x" * (i % 4))
    r = selected(imap_server)
    criteria = [
        b"(SUBJECT)",
        b"(REVERSE DATE)",
        b"(FROM REVERSE SIZE)",
        b"(DISPLAYFROM REVERSE ARRIVAL)",
        b"(CC REVERSE SUBJECT TO)",
    ]
    for n, crit in enumerate(criteria):
        plain = r.cmd(b"UID SORT RETURN (ALL) " + crit + b" UTF-8 ALL", b"p")[0]
        live = r.cmd(b"UID SORT RETURN (UPDATE ALL) " + crit + b" UTF-8 ALL", b"u%d" % n)[0]
        assert plain.split(b" ALL ")[1] == live.split(b" ALL ")[1], crit


def _expand(text: bytes) -> list[int]:
    out: list[int] = []
    for part in text.split(b","):
        a, _, b = part.partition(b":")
        lo, hi = int(a), int(b or a)
        out.extend(range(min(lo, hi), max(lo, hi) + 1))
    return out


class _Mirror:
    """What a client keeps of an updating search: the result, changed as RFC 5267 §4.3.3 and
    §4.3.4 say (and, for message numbers, renumbered by EXPUNGE)."""

    def __init__(self, tag: str, first: bytes, uid: bool):
        self.mark = b'* ESEARCH (TAG "' + tag.encode() + b'")'
        self.uid = uid
        self.result = _expand(first.split(b" ALL ")[1]) if b" ALL " in first else []

    def feed(self, line: bytes) -> None:
        if line.endswith(b" EXPUNGE"):
            if self.uid:
                return
            n = int(line.split()[1])
            assert n not in self.result  # REMOVEFROM came first
            self.result = [x - 1 if x > n else x for x in self.result]
            return
        if not line.startswith(self.mark):
            return
        words = line[len(self.mark) :].split(b" ", 2)
        kind, pairs = (words[1], words[2]) if words[0] == b"" else (words[0], words[1])
        if kind == b"UID":
            kind, _, pairs = pairs.partition(b" ")
        items = pairs.strip(b"()").split(b" ")
        for pos, nums in zip(items[::2], items[1::2], strict=True):
            p, nums = int(pos) - 1, _expand(nums)
            if kind == b"ADDTO":
                self.result[p:p] = nums
            else:
                assert self.result[p : p + len(nums)] == nums, (line, self.result)
                del self.result[p : p + len(nums)]


def test_random_changes_keep_the_client_mirror_equal_to_a_new_search(imap_server):
    import random

    rnd = random.Random(5267)
    c = connect(imap_server)
    for i in range(12):
        c.append("INBOX", None, None, message(i, subject=rnd.choice(["a", "b", "c", "d"])))
    c.select("INBOX")
    r = selected(imap_server)
    searches = {
        "q1": b"SEARCH RETURN (UPDATE ALL) UNSEEN UNDELETED",
        "q2": b"UID SEARCH RETURN (UPDATE ALL) OR FLAGGED SUBJECT b",
        "q3": b"UID SORT RETURN (UPDATE ALL) (REVERSE SUBJECT ARRIVAL) UTF-8 UNFLAGGED",
        "q4": b"SORT RETURN (UPDATE ALL) (SIZE REVERSE ARRIVAL) UTF-8 UNSEEN",
    }
    mirrors = {
        t: _Mirror(t, r.cmd(q, t.encode())[0], q.startswith(b"UID")) for t, q in searches.items()
    }
    for step in range(40):
        n = int(c.select("INBOX")[1][0])
        op = rnd.random()
        if op < 0.25 or n < 3:
            size = b"x" * rnd.randrange(50)
            subject = rnd.choice(["a", "b", "c", "d"])
            flags = rnd.choice([None, "(\\Seen)", "(\\Flagged)"])
            c.append("INBOX", flags, None, message(100 + step, subject=subject) + size)
        elif op < 0.4:
            c.store(str(rnd.randint(1, n)), "+FLAGS", "(\\Deleted)")
            c.expunge()
        else:
            which = f"{rnd.randint(1, n)}:{rnd.randint(1, n)}"
            sign = rnd.choice("+-")
            c.store(which, sign + "FLAGS", rnd.choice(["(\\Seen)", "(\\Flagged)", "(\\Deleted)"]))
        if step % 5 == 4:
            for t, q in searches.items():
                # Header keys are evaluated in the thread pool: their updates may take a turn.
                for _ in range(50):
                    lines = r.cmd(b"NOOP")  # EXPUNGEs delivered: the numbering settles
                    lines += r.cmd(q.replace(b"UPDATE ", b""), b"f")
                    for line in lines:
                        for m in mirrors.values():
                            m.feed(line)
                    fresh = _Mirror("f", _esearch(lines, "f")[0], True).result
                    if mirrors[t].result == fresh:
                        break
                    time.sleep(0.02)
                assert mirrors[t].result == fresh, (t, step)


def test_session_with_updating_searches_is_freed_at_once(imap_server):
    """The view and its updating searches refer to each other while selected; closing the
    connection must not leave them to the cycle collector."""
    import gc

    from mailsuite.imap.session import Session
    from tests.session_lifetime import drop_and_wait_freed, live_session

    c = connect(imap_server)
    c.append("INBOX", None, None, message(1, subject="needle"))
    gc.collect()
    gc.disable()
    try:
        r = selected(imap_server)
        r.cmd(b"UID SEARCH RETURN (UPDATE) UNSEEN", b"a")
        r.cmd(b"UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 SUBJECT needle", b"b")
        c.select("INBOX")
        c.store("1", "+FLAGS", "(\\Seen)")
        ref = live_session(
            Session,
            lambda s: (
                s.services is imap_server.services
                and s.view is not None
                and bool(s.view.contexts.searches)
            ),
        )
        drop_and_wait_freed(r.sock, ref)
    finally:
        gc.enable()


def test_removefrom_precedes_vanished_with_qresync_and_a_move_away(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    c.create("Archive")
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"ENABLE QRESYNC")
    r.cmd(b"SELECT INBOX")
    r.cmd(b"UID SEARCH RETURN (UPDATE) ALL", b"s1")
    c.select("INBOX")
    typ, _ = c.uid("MOVE", "2", "Archive")
    assert typ == "OK"
    out = r.cmd(b"NOOP")
    assert out.index(b'* ESEARCH (TAG "s1") UID REMOVEFROM (2 2)') < out.index(b"* VANISHED 2")
