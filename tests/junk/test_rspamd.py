"""rspamd as the judge: /checkv2 actions applied, learning sent to the controller, and a
failing or silent rspamd falling back to the built-in filter within the timeout."""

from __future__ import annotations

import smtplib
import socket
import time

import pytest

from tests.junk.conftest import ONLY, USER, header, imap_login, send, stored_copy, wait_for
from tests.junk.corpus import corpus
from tests.junk.rspamd_support import JUNK_SUBJECT, REJECT_SUBJECT


def rspamd_server(server_factory, url: str, **junk):
    srv = server_factory(
        auth={"plaintext": "loopback"},
        listen=ONLY,
        junk={"rspamd": url, "rspamd_timeout": 5.0, **junk},
    )
    srv.add_user(USER)
    return srv


def _with_subject(raw: bytes, subject: str) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"subject:")]
    return b"\r\n".join(lines + [b"Subject: " + subject.encode()]) + b"\r\n\r\n" + body


def test_rspamd_reject_is_refused_at_data(server_factory, rspamd):
    srv = rspamd_server(server_factory, rspamd.url)
    with pytest.raises(smtplib.SMTPDataError) as err:
        send(srv, _with_subject(corpus("ham", 1)[0], REJECT_SUBJECT))
    assert err.value.smtp_code == 550
    assert b"5.7.1" in err.value.smtp_error and b"rspamd reject" in err.value.smtp_error
    assert srv.messages(USER) == []


def test_rspamd_add_header_files_in_junk_with_its_reason(server_factory, rspamd):
    srv = rspamd_server(server_factory, rspamd.url)
    raw = _with_subject(corpus("ham", 1)[0], JUNK_SUBJECT)
    send(srv, raw)
    stored = stored_copy(srv, raw, "Junk")
    assert stored is not None
    reason = header(stored, b"X-Spam-Reason")
    assert b"rspamd add header" in reason and b"RSPAMD_TEST_JUNK" in reason
    assert b"words" not in reason  # rspamd's verdict stands in for the built-in words
    legit = corpus("ham", 1, seed=2)[0]
    send(srv, legit)
    assert b"rspamd no action" in header(stored_copy(srv, legit), b"X-Spam-Reason")


def test_moves_into_and_out_of_junk_are_sent_to_rspamd(server_factory, rspamd):
    srv = rspamd_server(server_factory, rspamd.url, rspamd_controller=rspamd.controller_url)
    before = rspamd.learned()
    for raw in corpus("junk", 2, seed=31):
        send(srv, raw)
    c = imap_login(srv)
    c.select("INBOX")
    c.uid("MOVE", "1:2", "Junk")
    assert wait_for(lambda: rspamd.learned() >= before + 2, 20)
    c.select("Junk")
    c.uid("MOVE", "1", "INBOX")
    assert wait_for(lambda: rspamd.learned() >= before + 3, 20)
    c.logout()


def test_a_silent_rspamd_falls_back_to_the_builtin_filter_after_the_timeout(server_factory, logs):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (backlog), never answers
    port = silent.getsockname()[1]
    try:
        srv = rspamd_server(server_factory, f"http://127.0.0.1:{port}", rspamd_timeout=0.5)
        raw = corpus("ham", 1)[0]
        started = time.monotonic()
        send(srv, raw)
        assert time.monotonic() - started < 3
        assert b"words untrained" in header(stored_copy(srv, raw), b"X-Spam-Reason")
        assert logs.matching("rspamd check failed")
    finally:
        silent.close()


def test_a_refusing_rspamd_falls_back_to_the_builtin_filter(server_factory, logs):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused
    srv = rspamd_server(server_factory, f"http://127.0.0.1:{port}")
    raw = corpus("ham", 1)[0]
    send(srv, raw)
    assert stored_copy(srv, raw) is not None
    assert srv.services.junk.rspamd.failures == 1
