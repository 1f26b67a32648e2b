"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA; bare LF/CR are rejected or normalized.

Each attempt hides a second transaction (to bob) behind a non-standard end of data.  With the
default policy "reject" the message is refused with 554 5.5.2 once the real end arrives; with
"normalize" it is stored as one message.  In neither case does bob get anything, and the
smuggled commands never produce a reply of their own.
"""

import pytest

from tests.smtp.conftest import Wire

FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\r\n\x00.\r\n"]


def smuggle(fake_end: bytes) -> bytes:
    return (
        b"From: a@remote.test\r\nSubject: outer\r\n\r\nhello"
        + fake_end
        + b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        + b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\npay now\r\n"
    )


def send_attempt(server, fake_end: bytes) -> list[tuple[int, str]]:
    w = Wire(server.ports["smtp"])
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    assert w.cmd("DATA")[0] == 354
    w.send(smuggle(fake_end) + b".\r\nNOOP\r\n")
    replies = w.replies(2)
    w.close()
    return replies


@pytest.mark.parametrize("fake_end", FAKE_ENDS)
def test_reject_policy_refuses_with_554_5_5_2(server, fake_end):
    (code, text), after = send_attempt(server, fake_end)
    if b"\x00" in fake_end:
        # No bare newline at all: a NUL line is just content, the message is accepted whole.
        assert code == 250
        assert b"MAIL FROM:<ceo@example.test>" in server.message("alice@example.test")
    else:
        assert (code, text[:5]) == (554, "5.5.2"), text
        assert server.maildir_files("alice@example.test") == []
    assert after == (250, "2.0.0 Ok")  # the NOOP: nothing smuggled was answered
    assert server.maildir_files("bob@example.test") == []


@pytest.mark.parametrize("fake_end", FAKE_ENDS)
def test_normalize_policy_keeps_one_message(smtp_server, fake_end):
    server = smtp_server(smtp={"bare_newline": "normalize"})
    (code, _), after = send_attempt(server, fake_end)
    assert code == 250
    assert after == (250, "2.0.0 Ok")
    stored = server.message("alice@example.test")
    assert b"Subject: outer" in stored and b"Subject: smuggled" in stored
    assert b"\r" not in stored.split(b"Subject: outer")[1]  # every line end normalized
    assert server.maildir_files("bob@example.test") == []


def test_bare_lf_in_ordinary_text_is_rejected_under_reject_policy(server):
    w = Wire(server.ports["smtp"])
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    w.cmd("RCPT TO:<alice@example.test>")
    w.cmd("DATA")
    w.send(b"Subject: unix\n\nline ends from a script\n.\r\n")
    # "\n.\r\n" is not the end either: the real one must follow.
    w.send(b"\r\n.\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (554, "5.5.2")
    w.close()


def test_lf_terminated_commands_are_accepted(server):
    """Only DATA content is subject to the policy; `nc`-style LF commands still work."""
    w = Wire(server.ports["smtp"])
    w.send(b"EHLO c\n")
    assert w.reply()[0] == 250
    w.send(b"NOOP\n")
    assert w.reply()[0] == 250
    w.close()
