"""The IMAP state machine driven without a socket or a reactor: bytes in, replies out
(RFC 3501 §3 states, §6.2.1 STARTTLS, §7.5 continuation, §5.2 untagged updates)."""

from __future__ import annotations

import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsuite.imap.commands.client_id import VERSION
from mailsuite.imap.server_state import ImapState
from mailsuite.imap.states import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, SELECTED
from tests.imap.session_machine import USER, make_services, open_session

MESSAGE = b"From: bob@example.test\nSubject: hello\n\nHi.\n"


def drop_into_new(services, name: str) -> None:
    """A message file written into Maildir new/ by another program (an MDA, rsync)."""
    new = services.store.path_for(USER) / "new"
    (new / f"{int(time.time())}.{name}.P{os.getpid()}.test").write_bytes(MESSAGE)


def test_login_refused_before_starttls_rfc3501_6_2_3(tmp_path):
    services = make_services(tmp_path)  # auth.plaintext = "never"
    session, conn = open_session(services)
    session.greet()
    (greeting,) = conn.take()
    assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    assert b" STARTTLS" in greeting and b" LOGINDISABLED" in greeting
    assert b"AUTH=PLAIN" not in greeting

    session.receive(b"a1 LOGIN alice@example.test secret\r\n")
    assert conn.take() == [
        b"a1 NO [PRIVACYREQUIRED] Plaintext authentication disallowed without TLS"
    ]
    assert session.state == NOT_AUTHENTICATED

    session.receive(b"a2 STARTTLS\r\n")
    assert conn.take() == [b"a2 OK Begin TLS negotiation now"]
    assert conn.secure
    session.receive(b"a3 CAPABILITY\r\n")
    caps, ok = conn.take()
    assert b" AUTH=PLAIN" in caps and b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    assert ok == b"a3 OK CAPABILITY completed"


def test_select_before_login_is_bad_and_changes_nothing_rfc3501_6_3_1(tmp_path):
    session, conn = open_session(make_services(tmp_path, with_tls=False))
    session.receive(b"s1 SELECT INBOX\r\n")
    assert conn.take() == [b"s1 BAD SELECT not allowed in the not authenticated state"]
    assert session.state == NOT_AUTHENTICATED and session.view is None
    # A selected-state command once logged in but with nothing selected: BAD as well.
    session.logged_in(USER)
    session.receive(b"s2 FETCH 1 FLAGS\r\n")
    assert conn.take() == [b"s2 BAD FETCH not allowed in the authenticated state"]
    assert session.state == AUTHENTICATED


def test_split_and_pipelined_bytes_run_in_order(tmp_path):
    session, conn = open_session(make_services(tmp_path, with_tls=False))
    session.receive(b"a1 NO")
    assert conn.take() == []
    session.receive(b"OP\r\na2 ID NIL\r\na3 LOG")
    assert conn.take() == [
        b"a1 OK NOOP completed",
        b'* ID ("name" "mailsuite" "version" "' + VERSION.encode() + b'")',
        b"a2 OK ID completed",
    ]
    session.receive(b"OUT\r\n")
    assert conn.take() == [b"* BYE mailsuite logging out", b"a3 OK LOGOUT completed"]
    assert conn.closed and session.state == LOGOUT


def test_synchronizing_literal_gets_a_continuation_rfc3501_7_5(tmp_path):
    session, conn = open_session(make_services(tmp_path, with_tls=False))
    session.receive(b"a1 NOOP {3}\r\n")
    assert conn.take() == [b"+ Ready for literal data"]
    session.receive(b"abc\r\n")
    assert conn.take() == [b"a1 OK NOOP completed"]


def test_folder_event_reaches_the_selected_session_at_noop_rfc3501_6_1_2(tmp_path):
    services = make_services(tmp_path, with_tls=False)
    session, conn = open_session(services)
    session.logged_in(USER)
    session.receive(b"s1 SELECT INBOX\r\n")
    lines = conn.take()
    assert b"* 0 EXISTS" in lines and lines[-1] == b"s1 OK [READ-WRITE] SELECT completed"
    assert session.state == SELECTED

    drop_into_new(services, "M1")
    # The shared folder notices the file (as the IDLE poll or another session would make it);
    # the event waits in the view until a command may carry it.
    session.view.folder.refresh(force=True)
    assert conn.take() == []
    session.receive(b"n1 NOOP\r\n")
    assert conn.take() == [b"* 1 EXISTS", b"* 1 RECENT", b"n1 OK NOOP completed"]


def test_recent_claims_belong_to_one_server_rfc3501_2_3_2(tmp_path):
    """\\Recent goes to the first session that sees a message; a second server in the same
    process (its own ImapState) keeps its own claims."""
    services = make_services(tmp_path, with_tls=False)
    drop_into_new(services, "M1")

    def recent_on_select(state=None) -> bytes:
        session, conn = open_session(services, state=state)
        session.logged_in(USER)
        session.receive(b"s SELECT INBOX\r\n")
        (line,) = [x for x in conn.take() if x.endswith(b" RECENT")]
        return line

    assert recent_on_select() == b"* 1 RECENT"
    assert recent_on_select() == b"* 0 RECENT"
    assert recent_on_select(ImapState()) == b"* 1 RECENT"


def test_refresh_clock_is_per_state(tmp_path):
    """Two ImapStates never share the once-a-second limit on disk checks of a folder."""
    services = make_services(tmp_path, with_tls=False)
    folder = services.store.mailbox(USER).folder("INBOX")
    now = [100.0]
    first, second = ImapState(clock=lambda: now[0]), ImapState(clock=lambda: now[0])
    first.refresh(folder)
    drop_into_new(services, "M1")
    first.refresh(folder)  # within the interval: no disk check
    assert len(folder.messages) == 0
    second.refresh(folder)
    assert len(folder.messages) == 1
    drop_into_new(services, "M2")
    now[0] += 1.0
    first.refresh(folder)
    assert len(folder.messages) == 2


REPLY = re.compile(rb"^(\* |\+ |[!-~]+ (OK|NO|BAD) )")


@pytest.fixture(scope="module")
def fuzz_services(tmp_path_factory):
    # No TLS and no plaintext logins: nothing the fuzzer sends can reach the thread pool.
    return make_services(tmp_path_factory.mktemp("fuzz"), with_tls=False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [b"\r\n", b"a1 ", b"CAPABILITY", b"NOOP", b"ID (", b"{3}", b"{2+}", b'"x"']
            ),
        ),
        max_size=30,
    )
)
def test_random_bytes_get_well_formed_replies(fuzz_services, pieces):
    """Whatever arrives, in whatever pieces: the session answers with status, untagged or
    continuation lines, never an internal error, and never raises."""
    session, conn = open_session(fuzz_services)
    for piece in pieces:
        session.receive(piece)
        if conn.closed:
            break
    for line in conn.take():
        assert REPLY.match(line), line
        assert b"SERVERBUG" not in line


def test_fetch_of_one_number_answers_as_its_range_rfc3501_6_4_5(tmp_path):
    # One message by its number (read the short way) gets what the range n:n gets.
    services = make_services(tmp_path, with_tls=False)
    for i in range(3):
        drop_into_new(services, f"M{i}")
    session, conn = open_session(services)
    session.logged_in(USER)
    session.receive(b"s1 SELECT INBOX\r\n")
    assert b"* 3 EXISTS" in conn.take()
    for n in (1, 2, 3):
        session.receive(b"a FETCH %d (UID FLAGS BODY.PEEK[])\r\n" % n)
        one = conn.take()
        session.receive(b"a FETCH %d:%d (UID FLAGS BODY.PEEK[])\r\n" % (n, n))
        assert conn.take() == one
        assert one[0].startswith(b"* %d FETCH (UID " % n) and one[-1] == b"a OK FETCH completed"
    session.receive(b"b FETCH 4 (UID)\r\n")
    assert conn.take() == [b"b BAD Invalid message sequence number"]
