"""Random commands over a real socket never crash a handler: every command gets a tagged OK,
NO or BAD, never NO [SERVERBUG], and the session keeps working afterwards."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imap.conftest import Raw, append_n, connect

NAMES = [
    "FETCH",
    "UID FETCH",
    "STORE",
    "UID STORE",
    "SEARCH",
    "UID SEARCH",
    "COPY",
    "UID MOVE",
    "MOVE",
    "EXPUNGE",
    "UID EXPUNGE",
    "STATUS",
    "LIST",
    "LSUB",
    "SELECT",
    "EXAMINE",
    "CREATE",
    "RENAME",
    "SUBSCRIBE",
    "APPEND",
    "ENABLE",
    "ID",
    "SORT",
    "THREAD",
    "GETQUOTAROOT",
    "NOOP",
    "NAMESPACE",
    "CHECK",
    "UID SORT",
    "UID THREAD",
    "NOTIFY",
    "CANCELUPDATE",
    "GENURLAUTH",
    "RESETKEY",
    "URLFETCH",
    "ESEARCH",
]
ATOMS = [
    "1",
    "2:*",
    "*",
    "$",
    "1,3:4",
    "0",
    "4294967296",
    "FLAGS",
    "UID",
    "BODY[]",
    "BODY.PEEK[1.2]",
    "BODY[HEADER.FIELDS (FROM)]<0.5>",
    "ENVELOPE",
    "BODYSTRUCTURE",
    "RFC822.SIZE",
    "BINARY[1]",
    "ALL",
    "OR",
    "NOT",
    "SUBJECT",
    "TEXT",
    "BEFORE",
    "1-Jan-2020",
    "LARGER",
    "CHARSET",
    "UTF-8",
    "+FLAGS",
    "-FLAGS.SILENT",
    "\\Seen",
    "\\Deleted",
    "$Junk",
    "INBOX",
    "Sent",
    "Trash",
    "RETURN",
    "MIN",
    "COUNT",
    "SAVE",
    "CONDSTORE",
    "QRESYNC",
    "MODSEQ",
    "CHANGEDSINCE",
    "UNCHANGEDSINCE",
    "VANISHED",
    "REFERENCES",
    "REVERSE",
    "DATE",
    "NIL",
    "MESSAGES",
    "USE",
    "UPDATE",
    "CONTEXT",
    "PARTIAL",
    "-1:-5",
    "SET",
    "NONE",
    "STATUS",
    "SELECTED",
    "SELECTED-DELAYED",
    "PERSONAL",
    "INBOXES",
    "SUBSCRIBED",
    "SUBTREE",
    "MAILBOXES",
    "MessageNew",
    "MessageExpunge",
    "FlagChange",
    "MailboxName",
    "SubscriptionChange",
    "AnnotationChange",
    "INTERNAL",
    '"imap://user%40example.test@mail.example.test/INBOX/;UID=1;URLAUTH=anonymous"',
    '"imap://user%40example.test@mail.example.test/INBOX/;UID=1;URLAUTH=anonymous:internal:01ab"',
    '"imap://h/INBOX;UIDVALIDITY=1/;UID=1/;SECTION=1;PARTIAL=0.5;EXPIRE=2020-01-01T00:00:00Z"',
]


def _arg(depth=0):
    base = st.one_of(
        st.sampled_from(ATOMS),
        st.text('abcXYZ019 %*&-/\\"', max_size=8).map(
            lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
        ),
        st.integers(0, 10**6).map(str),
    )
    if depth >= 2:
        return base
    return st.one_of(
        base, st.lists(_arg(depth + 1), max_size=4).map(lambda xs: "(" + " ".join(xs) + ")")
    )


commands = st.tuples(st.sampled_from(NAMES), st.lists(_arg(), max_size=5)).map(
    lambda t: (t[0] + " " + " ".join(t[1])).strip()
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(commands, min_size=1, max_size=4))
def test_random_commands_get_a_clean_reply(imap_server, cmds):
    if not hasattr(imap_server, "_fuzz"):
        append_n(connect(imap_server), 3)
        r = Raw(imap_server.port("imap"))
        r.login()
        imap_server._fuzz = r
    r = imap_server._fuzz
    r.cmd(b"SELECT INBOX", b"s")
    for i, text in enumerate(cmds):
        tag = b"f%d" % i
        out = r.cmd(text.encode(), tag)
        last = out[-1]
        assert last.split()[1] in (b"OK", b"NO", b"BAD"), (text, out)
        assert b"SERVERBUG" not in last, (text, out)
    assert r.cmd(b"NOOP", b"n")[-1].startswith(b"n OK")
