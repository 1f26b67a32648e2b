"""SEARCH / UID SEARCH through the server (RFC 3501 §6.4.4), ESEARCH (4731), SEARCHRES (5182),
MODSEQ search (7162)."""

import threading
import time

from tests.imap.conftest import Raw, append_n, connect, message, selected


def _setup(srv):
    c = connect(srv)
    append_n(c, 5)
    c.append("INBOX", None, None, message(6, subject="Quarterly report", body="Grüße\r\n"))
    r = Raw(srv.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    r.cmd(b"STORE 2,4 +FLAGS.SILENT (\\Seen)")
    return r


def test_flag_and_text_search(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"SEARCH UNSEEN")[0] == b"* SEARCH 1 3 5 6"
    assert r.cmd(b"UID SEARCH SEEN")[0] == b"* SEARCH 2 4"
    assert r.cmd(b"SEARCH OR SUBJECT quarterly 1")[0] == b"* SEARCH 1 6"
    out = r.cmd("SEARCH CHARSET UTF-8 BODY grüSSe".encode())
    assert out[-1].startswith(b"t OK"), out
    out = r.cmd("SEARCH CHARSET UTF-8 TEXT GRÜSSE".encode())
    assert out[-1].startswith(b"t OK")
    assert r.cmd("SEARCH CHARSET UTF-8 BODY grüße".encode())[0] == b"* SEARCH 6"
    assert r.cmd(b"SEARCH CHARSET KOI8-X ALL")[-1].startswith(b"t NO [BADCHARSET")


def test_esearch_rfc4731(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN")
    assert out[0] == b'* ESEARCH (TAG "t") UID MIN 1 MAX 6 COUNT 4 ALL 1,3,5:6'


def test_searchres_rfc5182(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"SEARCH RETURN (SAVE) SEEN") == [b"t OK SEARCH completed"]
    out = r.cmd(b"FETCH $ (UID)")
    assert out[:2] == [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)"]
    r.cmd(b"UID STORE $ +FLAGS.SILENT (\\Flagged)")
    assert r.cmd(b"SEARCH FLAGGED")[0] == b"* SEARCH 2 4"


def test_modseq_search_rfc7162(imap_server):
    r = _setup(imap_server)
    out = r.cmd(b"FETCH 4 (MODSEQ)")
    assert out[0].startswith(b"* OK [HIGHESTMODSEQ "), out  # RFC 7162 §3.1: first enabling
    m = int(out[1].split(b"MODSEQ (")[1].split(b")")[0])
    out = r.cmd(b"SEARCH MODSEQ %d" % m)
    assert out[0].startswith(b"* SEARCH 4 (MODSEQ ")


def test_search_sees_no_expunged_sequence_shift(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"SEARCH 2:3 UNSEEN")[0] == b"* SEARCH 3"


def test_sort_and_thread_rfc5256(imap_server):
    c = connect(imap_server)
    # Distinct internal dates: ARRIVAL ties fall back to mailbox order (RFC 5256 §3).
    c.append("INBOX", None, '"01-Jan-2024 10:00:00 +0000"', message(1, subject="banana"))
    c.append("INBOX", None, '"01-Jan-2024 11:00:00 +0000"', message(2, subject="Re: apple"))
    c.append("INBOX", None, '"01-Jan-2024 12:00:00 +0000"', message(3, subject="apple"))
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    assert r.cmd(b"SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 2 3 1"
    assert r.cmd(b"UID SORT (REVERSE ARRIVAL) UTF-8 ALL")[0] == b"* SORT 3 2 1"
    out = r.cmd(b"THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert out[0].startswith(b"* THREAD ") and out[-1].startswith(b"t OK")
    assert r.cmd(b"THREAD BOGUS UTF-8 ALL")[-1].startswith(b"t BAD")


def test_flag_only_fast_path_matches_the_evaluator(tmp_path):
    from mailsuite.imap import search as search_mod
    from mailsuite.imap.commands.search import _flag_only
    from mailsuite.imap.parser import parse_line
    from mailsuite.store import Store

    store = Store(tmp_path)
    store.create_mailbox("alice@example.test")
    mbox = store.mailbox("alice@example.test")
    for flags in ([], ["\\Seen"], ["\\Seen", "\\Flagged"], ["\\Deleted", "$Work"], ["\\Draft"]):
        mbox.deliver(message(), flags=flags)
    msgs = mbox.folder("INBOX").messages
    for key in ("UNSEEN", "SEEN", "DELETED", "UNDELETED", "FLAGGED", "UNFLAGGED", "DRAFT"):
        prog = search_mod.parse_search(parse_line(b"t SEARCH " + key.encode()).args)
        fast = _flag_only(prog, msgs)
        assert fast is not None, key
        assert fast == search_mod.evaluate_seqs(prog, msgs, search_mod.SearchContext()), key
    for key in ("KEYWORD $work", "RECENT", "UNSEEN FLAGGED", "ALL"):
        prog = search_mod.parse_search(parse_line(b"t SEARCH " + key.encode()).args)
        assert _flag_only(prog, msgs) is None, key


def test_repeated_flag_search_follows_changes_from_other_sessions(imap_server):
    r = _setup(imap_server)
    assert r.cmd(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 1 3 5 6"
    other = connect(imap_server)
    other.select("INBOX")
    other.store("1", "+FLAGS", "(\\Seen)")
    assert r.cmd(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 3 5 6"
    other.store("6", "+FLAGS", "(\\Deleted)")
    other.expunge()
    assert r.cmd(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 3 5"


def test_a_polled_flag_search_answers_by_number_and_by_uid_rfc3501_6_4_4(imap_server):
    """The one-flag answers polled again and again are made once per change, and a SEARCH
    (numbers) and a UID SEARCH of the same flag are never taken for each other."""
    r = _setup(imap_server)
    r.cmd(b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    r.cmd(b"EXPUNGE")  # numbers and UIDs now differ by one
    for _ in range(2):
        assert r.cmd(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 3 5 6"
        assert r.cmd(b"SEARCH UNSEEN")[0] == b"* SEARCH 2 4 5"
    other = connect(imap_server)
    other.select("INBOX")
    assert other.search(None, "UNSEEN") == ("OK", [b"2 4 5"])
    other.store("2", "+FLAGS", "(\\Seen)")
    assert r.cmd(b"UID SEARCH UNSEEN")[0] == b"* SEARCH 5 6"
    assert r.cmd(b"SEARCH UNSEEN")[0] == b"* SEARCH 4 5"
    assert r.cmd(b"SEARCH RETURN (COUNT) UNSEEN")[0] == b'* ESEARCH (TAG "t") COUNT 2'
    other.logout()


def test_a_search_runs_on_the_reactor_only_while_keys_times_messages_is_small():
    from mailsuite.imap import search as search_mod
    from mailsuite.imap.parser import parse_line

    def program(keys: bytes):
        return search_mod.parse_search(parse_line(b"t SEARCH " + keys).args)

    nested = program(b"OR (UNSEEN 1:5) NOT (FLAGGED (UID 3:* DELETED))")
    assert nested.keys == 10  # every key, AND, OR and NOT counts, however deep
    assert nested.runs_inline(search_mod.INLINE_TESTS // 10)
    assert not nested.runs_inline(search_mod.INLINE_TESTS // 10 + 1)
    assert program(b"UNSEEN").runs_inline(10_000)
    assert not program(b"1:* " * 5000).runs_inline(100)
    assert not program(b"BODY x").runs_inline(1)  # reads message text: never inline


def test_a_search_of_thousands_of_keys_leaves_other_sessions_answered(imap_server):
    """12,000 keys over 300 messages takes the searching thread a second or more; another
    session's NOOP, sent while it runs, is answered before it ends (run on the reactor, the
    search held every session until it was done)."""
    c = connect(imap_server)
    append_n(c, 300)
    c.logout()
    busy = selected(imap_server)
    other = Raw(imap_server.port("imap"))
    other.login()
    answered: dict[str, float] = {}

    def search():
        busy.sock.settimeout(60)
        lines = busy.cmd(b"SEARCH " + b"1:* " * 12_000 + b"ALL", b"s")
        answered["search"] = time.monotonic()
        answered["hits"] = len(lines[0].split()) - 2

    searching = threading.Thread(target=search)
    searching.start()
    time.sleep(0.2)  # the search line is in and running
    assert other.cmd(b"NOOP", b"n")[-1] == b"n OK NOOP completed"
    answered["noop"] = time.monotonic()
    searching.join()
    assert answered["hits"] == 300
    assert answered["noop"] < answered["search"]
