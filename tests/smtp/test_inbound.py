"""Inbound MX (the "smtp" listener): local recipients only, no open relay, faithful delivery."""

import base64
import json
import os
import smtplib

import pytest

from tests.smtp.conftest import PASSWORD


def smtp(server, kind="smtp"):
    return smtplib.SMTP("127.0.0.1", server.ports[kind], timeout=10)


def lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def submit_as_alice(wire):
    """A submission session after STARTTLS and AUTH PLAIN as alice."""
    w = wire("submission")
    w.cmd("EHLO c")
    w.starttls()
    w.cmd("EHLO c")
    token = base64.b64encode(f"\0alice@example.test\0{PASSWORD}".encode()).decode()
    assert w.cmd(f"AUTH PLAIN {token}")[0] == 235
    return w


def test_message_is_stored_byte_for_byte_with_our_trace_headers(server):
    body = (
        b"From: Ext <ext@remote.test>\r\nTo: alice@example.test\r\nSubject: exact\r\n\r\n"
        b"line one\r\n.leading dot\r\n..two dots\r\n\ttab \xc3\xa9 8bit\r\n\r\nend\r\n"
    )
    with smtp(server) as s:
        s.ehlo("client.remote.test")
        s.sendmail("ext@remote.test", ["alice@example.test"], body, mail_options=["BODY=8BITMIME"])
    stored = server.message("alice@example.test")
    head, sep, rest = stored.partition(b"From: Ext")
    assert sep and lf(sep + rest) == lf(body)
    lines = head.split(b"\n")
    assert lines[0] == b"Return-Path: <ext@remote.test>"
    assert b"Received: from client.remote.test ([127.0.0.1])" in head
    assert b"by mx.example.test (mailsuite) with ESMTP id " in head
    assert b"for <alice@example.test>;" in head


def test_alias_catch_all_and_plus_tag_are_local(server):
    with smtp(server) as s:
        s.sendmail("ext@remote.test", ["sales@example.test"], b"Subject: a\r\n\r\nx\r\n")
        s.sendmail("ext@remote.test", ["anything@other.test"], b"Subject: b\r\n\r\nx\r\n")
        s.sendmail("ext@remote.test", ["bob+lists@example.test"], b"Subject: c\r\n\r\nx\r\n")
    assert len(server.maildir_files("alice@example.test")) == 1
    assert len(server.maildir_files("bob@example.test")) == 2
    assert len(server.maildir_files("carol@other.test")) == 1


def test_unknown_local_user_is_550_5_1_1(server):
    with smtp(server) as s:
        s.ehlo()
        s.mail("ext@remote.test")
        code, text = s.rcpt("nobody@example.test")
        assert code == 550 and text.startswith(b"5.1.1")


def test_null_sender_is_accepted_for_bounces(server):
    with smtp(server) as s:
        s.sendmail("", ["alice@example.test"], b"Subject: bounce\r\n\r\nx\r\n")
    assert server.message("alice@example.test").startswith(b"Return-Path: <>\n")


def test_bare_postmaster_is_accepted_rfc5321_4_1_1_3(server, wire):
    server.services.accounts.add_alias("postmaster@example.test", ["alice@example.test"])
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<>")
    assert w.cmd("RCPT TO:<Postmaster>")[0] == 250


@pytest.mark.parametrize("spelling", ["<postmaster>", "<Postmaster>", "<POSTMASTER>"])
def test_bare_postmaster_is_delivered_to_the_primary_domains_postmaster_rfc5321_4_5_1(
    server, wire, spelling
):
    server.services.accounts.add_alias("postmaster@example.test", ["bob@example.test"])
    w = wire()
    w.cmd("EHLO c")
    assert w.cmd("MAIL FROM:<>")[0] == 250
    assert w.cmd(f"RCPT TO:{spelling}")[0] == 250
    assert w.cmd("DATA")[0] == 354
    assert w.cmd("Subject: to the postmaster\r\n\r\nhello\r\n.")[0] == 250
    stored = server.message("bob@example.test")
    assert b"Subject: to the postmaster" in stored
    assert b"for <postmaster@example.test>;" in stored


def test_bare_postmaster_reaches_a_postmaster_user(server, wire):
    server.services.accounts.add_user("postmaster@example.test", "secret-pw-1")
    server.services.store.create_mailbox("postmaster@example.test")
    with smtp(server) as s:
        s.sendmail("ext@remote.test", ["postmaster"], b"Subject: pm\r\n\r\nx\r\n")
    assert b"Subject: pm" in server.message("postmaster@example.test")


def test_bare_postmaster_without_one_is_refused_at_rcpt_not_after_data(server, wire):
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<>")
    code, text = w.cmd("RCPT TO:<postmaster>")
    assert code == 550 and text.startswith("5.1.1")
    assert w.cmd("DATA")[0] == 554  # no valid recipients: nothing was promised


RELAY_TRICKS = [
    "victim@remote.test",
    "victim%remote.test@example.test",
    "victim%remote.test@other.test",  # catch-all domain: still refused
    '"victim@remote.test"@example.test',
    '"victim%remote.test"@example.test',
    "remote.test!victim@example.test",
    "@example.test:victim@remote.test",
    "@example.test,@other.test:victim@remote.test",
    "victim@[127.0.0.1]",
    "victim@[IPv6:::1]",
    "VICTIM@REMOTE.TEST",
]


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_open_relay_battery_is_refused_554_5_7_1(server, wire, rcpt):
    w = wire()
    w.cmd("EHLO spammer.test")
    assert w.cmd("MAIL FROM:<spam@remote.test>")[0] == 250
    code, text = w.cmd(f"RCPT TO:<{rcpt}>")
    assert (code, text[:5]) == (554, "5.7.1"), text
    assert w.cmd("DATA")[0] == 554  # RFC 2920 §3.1: no valid recipients
    assert not server.queue_entries()


@pytest.mark.parametrize("rcpt", ["victim@remote.test.", "victim@example.test.", "a@@b.test"])
def test_malformed_relay_addresses_are_syntax_errors(server, wire, rcpt):
    w = wire()
    w.cmd("EHLO spammer.test")
    w.cmd("MAIL FROM:<spam@remote.test>")
    code, text = w.cmd(f"RCPT TO:<{rcpt}>")
    assert (code, text[:5]) == (501, "5.1.3")


def test_source_route_to_a_local_user_is_delivered_locally(server):
    with smtp(server) as s:
        s.ehlo()
        s.mail("ext@remote.test")
        assert s.rcpt("<@relay.remote.test:alice@example.test>")[0] == 250
        assert s.data(b"Subject: routed\r\n\r\nx\r\n")[0] == 250
    assert len(server.maildir_files("alice@example.test")) == 1
    assert not server.queue_entries()


def test_quoted_local_part_that_needs_no_quotes_is_the_plain_address(server):
    with smtp(server) as s:
        s.ehlo()
        s.mail("ext@remote.test")
        assert s.rcpt('<"alice"@example.test>')[0] == 250
        s.data(b"Subject: q\r\n\r\nx\r\n")
    assert len(server.maildir_files("alice@example.test")) == 1


def test_smtputf8_address_and_received_keyword_rfc6531(server, wire):
    server.services.accounts.add_alias("j\u00f6rg@example.test", ["alice@example.test"])
    w = wire()
    w.cmd("EHLO c")
    assert w.cmd("MAIL FROM:<s\u00e9nder@b\u00fccher.test> SMTPUTF8")[0] == 250
    assert w.cmd("RCPT TO:<j\u00f6rg@example.test>")[0] == 250
    assert w.cmd("DATA")[0] == 354
    w.send("Subject: \u00fcber\r\n\r\nGr\u00fc\u00dfe\r\n.\r\n".encode())
    assert w.reply()[0] == 250
    stored = server.message("alice@example.test")
    assert "Return-Path: <s\u00e9nder@b\u00fccher.test>".encode() in stored
    assert b"with UTF8SMTP id" in stored
    assert "Gr\u00fc\u00dfe".encode() in stored


def test_utf8_recipient_without_smtputf8_is_553_5_6_7(server, wire):
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    code, text = w.cmd("RCPT TO:<j\u00f6rg@example.test>")
    assert (code, text[:5]) == (553, "5.6.7")


def test_dsn_parameters_are_kept_with_queued_copy_for_the_relay(server, wire):
    """Authenticated client relaying: NOTIFY/ORCPT/RET/ENVID land in the queue envelope."""
    w = submit_as_alice(wire)
    assert w.cmd("MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ314159")[0] == 250
    code, _ = w.cmd("RCPT TO:<far@remote.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;far+40x.test")
    assert code == 250
    assert w.cmd("RCPT TO:<bob@example.test> NOTIFY=NEVER")[0] == 250
    w.cmd("DATA")
    w.send(b"From: alice@example.test\r\nSubject: dsn\r\n\r\nbody\r\n.\r\n")
    assert w.reply()[0] == 250
    (entry,) = server.queue_entries()
    env = json.loads(entry.read_bytes().partition(b"\n")[0])  # the envelope line
    assert env["mail_from"] == "alice@example.test"
    assert env["dsn_ret"] == "HDRS" and env["dsn_envid"] == "QQ314159"
    (rcpt,) = env["recipients"]
    assert rcpt["address"] == "far@remote.test"
    assert rcpt["notify"] == ["SUCCESS", "FAILURE"]
    assert rcpt["orcpt"] == "rfc822;far+40x.test"
    assert len(server.maildir_files("bob@example.test")) == 1


def test_temporary_store_failure_is_451_and_leaves_no_partial_copy(server, wire):
    # bob's Maildir cannot take a file (tmp/ is a file): the whole message must fail, and
    # alice's copy, written first, must be withdrawn so the sender's retry is not a duplicate.
    bob_tmp = server.root / "data" / "mail" / "example.test" / "bob" / "tmp"
    for p in bob_tmp.iterdir():
        p.unlink()
    bob_tmp.rmdir()
    bob_tmp.write_bytes(b"")
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test>")
    assert w.cmd("RCPT TO:<alice@example.test>")[0] == 250
    assert w.cmd("RCPT TO:<bob@example.test>")[0] == 250
    w.cmd("DATA")
    w.send(b"Subject: t\r\n\r\nx\r\n.\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (451, "4.3.0")
    assert server.maildir_files("alice@example.test") == []
    assert w.cmd("NOOP")[0] == 250  # the session carries on


def test_queue_failure_after_local_copies_is_451_and_withdraws_them(server, wire):
    """A message for a local and a remote recipient: the queue cannot take it (queue/entries
    is a file), so the local copy already written is taken back and the client told to retry."""
    entry_dir = server.root / "data" / "queue" / "entries"
    entry_dir.rmdir()
    entry_dir.write_bytes(b"")
    w = submit_as_alice(wire)
    assert w.cmd("MAIL FROM:<alice@example.test>")[0] == 250
    assert w.cmd("RCPT TO:<bob@example.test>")[0] == 250
    assert w.cmd("RCPT TO:<far@remote.test>")[0] == 250
    w.cmd("DATA")
    w.send(b"From: alice@example.test\r\nSubject: t\r\n\r\nx\r\n.\r\n")
    code, text = w.reply()
    assert (code, text[0][:5]) == (451, "4.3.0")
    assert server.maildir_files("bob@example.test") == []
    assert os.listdir(server.root / "data" / "queue" / "tmp") == []  # nothing half-queued
    assert w.cmd("NOOP")[0] == 250


def test_idna_domain_forms_are_the_same_local_domain_rfc6531(server, wire):
    acc = server.services.accounts
    acc.add_domain("xn--bcher-kva.test")  # the accounts hold the A-label form
    acc.add_alias("info@xn--bcher-kva.test", ["alice@example.test"])
    w = wire()
    w.cmd("EHLO c")
    w.cmd("MAIL FROM:<a@remote.test> SMTPUTF8")
    assert w.cmd("RCPT TO:<info@b\u00fccher.test>")[0] == 250
    assert w.cmd("RCPT TO:<nobody@B\u00dcCHER.test>")[0] == 550
    w.cmd("DATA")
    w.send(b"Subject: idna\r\n\r\nx\r\n.\r\n")
    assert w.reply()[0] == 250
    assert len(server.maildir_files("alice@example.test")) == 1


def received(n: int) -> bytes:
    return b"".join(
        b"Received: from hop%d.remote.test by hop%d.remote.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        % (i, i + 1)
        for i in range(n)
    )


def test_a_message_past_max_hops_is_refused_as_a_loop_rfc5321_6_3(server):
    body = b"From: ext@remote.test\r\nSubject: round and round\r\n\r\nx\r\n"
    with smtp(server) as s:
        s.ehlo()
        # 50 Received fields (the default limit) pass; a folded one is still one field.
        s.sendmail(
            "ext@remote.test", ["alice@example.test"], received(49) + b"received:\r\n x\r\n" + body
        )
        with pytest.raises(smtplib.SMTPDataError) as refused:
            s.sendmail("ext@remote.test", ["alice@example.test"], received(51) + body)
    assert refused.value.smtp_code == 554
    assert refused.value.smtp_error.startswith(b"5.4.6 Error: too many hops")
    assert len(server.maildir_files("alice@example.test")) == 1
    # A Received field in the body is not a hop.
    with smtp(server) as s:
        s.sendmail("ext@remote.test", ["alice@example.test"], body + received(60))
    assert len(server.maildir_files("alice@example.test")) == 2
