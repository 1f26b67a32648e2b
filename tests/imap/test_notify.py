"""NOTIFY (RFC 5465) over real sockets: several sessions, SMTP delivery, Sieve, the admin
command's `deliver`; what a NOTIFYing session is told, when, and how it is refused."""

from __future__ import annotations

import re
import smtplib
import socket
import time
from pathlib import Path

import pytest

from tests.imap.conftest import USER, Raw, append_n, connect, message
from tests.managesieve.conftest import sievelib_client


def notifying(srv, spec: bytes, select: bytes | None = None) -> Raw:
    r = Raw(srv.port("imap"))
    r.login()
    if select is not None:
        assert r.cmd(b"SELECT " + select)[-1].startswith(b"t OK")
    out = r.cmd(b"NOTIFY SET " + spec, b"n")
    assert out[-1].startswith(b"n OK"), out
    return r


def unsolicited(r: Raw, count: int, seconds: float = 3.0) -> list[bytes]:
    """The next `count` lines the server sends without being asked."""
    r.sock.settimeout(seconds)
    return [r.line() for _ in range(count)]


def nothing_more(r: Raw) -> list[bytes]:
    """What arrives before a NOOP's tagged reply (after NOTIFY NONE: nothing)."""
    return r.cmd(b"NOOP", b"z")[:-1]


def status_of(line: bytes) -> tuple[bytes, dict[str, int]]:
    m = re.fullmatch(rb"\* STATUS (\S+) \((.*)\)", line)
    assert m, line
    items = m.group(2).split()
    return m.group(1), {items[i].decode(): int(items[i + 1]) for i in range(0, len(items), 2)}


def smtp_deliver(srv, msg: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        s.sendmail("bob@example.net", [USER], msg)


def test_capability_advertises_notify(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert b" NOTIFY" in r.cmd(b"CAPABILITY")[0]


def test_smtp_delivery_to_another_mailbox_is_a_status_rfc5465_5_2(full_server):
    r = notifying(
        full_server,
        b"(selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))",
        b"Drafts",
    )
    start = time.monotonic()
    smtp_deliver(full_server, message())
    [line] = unsolicited(r, 1)
    assert time.monotonic() - start < 1.5
    name, items = status_of(line)
    assert name == b"INBOX"
    assert items["MESSAGES"] == 1 and items["UIDNEXT"] == 2 and items["UNSEEN"] == 1
    assert items["UIDVALIDITY"] > 0
    assert "HIGHESTMODSEQ" not in items  # only once CONDSTORE is enabled


def test_sieve_fileinto_create_is_a_list_and_a_status(full_server):
    store = full_server.services.delivery.sieve.scripts(full_server.services.store.path_for(USER))
    store.put("main", 'require ["fileinto", "mailbox"];\nfileinto :create "Lists/dev";\n')
    store.activate("main")
    r = notifying(full_server, b"(personal (MessageNew MessageExpunge MailboxName))")
    smtp_deliver(full_server, message())
    lines = unsolicited(r, 2)
    assert lines[0] == b'* LIST () "/" Lists/dev'
    statuses = [status_of(x) for x in lines if x.startswith(b"* STATUS")]
    assert statuses and statuses[0][0] == b"Lists/dev" and statuses[0][1]["MESSAGES"] == 1


def test_admin_deliver_reaches_a_notifying_session_without_a_command(imap_server):
    r = notifying(imap_server, b"(inboxes (MessageNew MessageExpunge))")
    res = imap_server.cli("deliver", "--to", USER, input=message().replace(b"\r\n", b"\n"))
    assert res.returncode == 0, res.stderr
    [line] = unsolicited(r, 1, seconds=4)
    assert status_of(line) == (b"INBOX", status_of(line)[1])
    assert status_of(line)[1]["MESSAGES"] == 1


def test_admin_deliver_into_the_selected_mailbox_is_pushed(imap_server):
    r = notifying(imap_server, b"(selected (MessageNew MessageExpunge))", b"INBOX")
    res = imap_server.cli("deliver", "--to", USER, input=message().replace(b"\r\n", b"\n"))
    assert res.returncode == 0, res.stderr
    assert unsolicited(r, 2, seconds=4) == [b"* 1 EXISTS", b"* 1 RECENT"]


def test_other_sessions_append_and_flags_are_status_with_highestmodseq(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"ENABLE CONDSTORE")
    out = r.cmd(b"NOTIFY SET (mailboxes Sent (MessageNew MessageExpunge FlagChange))", b"n")
    assert out[-1].startswith(b"n OK")
    c = connect(imap_server)
    append_n(c, 1, "Sent")
    _, items = status_of(unsolicited(r, 1)[0])
    assert items["MESSAGES"] == 1 and "HIGHESTMODSEQ" in items
    first = items["HIGHESTMODSEQ"]
    c.select("Sent")
    c.store("1", "+FLAGS", "(\\Seen)")
    _, items = status_of(unsolicited(r, 1)[0])
    assert items["UNSEEN"] == 0 and items["HIGHESTMODSEQ"] > first
    # Drafts is not covered: nothing about it.
    append_n(c, 1, "Drafts")
    assert nothing_more(r) == []
    c.logout()


def test_notify_set_status_sends_every_covered_mailbox_but_the_selected(imap_server):
    c = connect(imap_server)
    append_n(c, 2, "Archive")
    r = Raw(imap_server.port("imap"))
    r.login()
    r.cmd(b"SELECT INBOX")
    out = r.cmd(
        b"NOTIFY SET STATUS (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))",
        b"n",
    )
    assert out[-1].startswith(b"n OK")
    names = {status_of(x)[0]: status_of(x)[1] for x in out[:-1]}
    assert b"INBOX" not in names
    assert {b"Archive", b"Drafts", b"Sent", b"Trash", b"Junk"} <= set(names)
    assert names[b"Archive"]["MESSAGES"] == 2
    c.logout()


def test_create_rename_delete_subscribe_are_list_responses_rfc5465_5_4(imap_server):
    r = notifying(imap_server, b"(personal (MailboxName SubscriptionChange))")
    c = connect(imap_server)
    c.create("Projects")
    assert unsolicited(r, 1) == [b'* LIST () "/" Projects']
    c.rename("Projects", "Done")
    assert unsolicited(r, 1) == [b'* LIST () "/" Done ("OLDNAME" (Projects))']
    c.subscribe("Done")
    assert unsolicited(r, 1) == [b'* LIST (\\Subscribed) "/" Done']
    c.unsubscribe("Done")
    assert unsolicited(r, 1) == [b'* LIST () "/" Done']
    c.delete("Done")
    assert unsolicited(r, 1) == [b'* LIST (\\NonExistent) "/" Done']
    c.logout()


def test_selected_mailbox_changes_arrive_without_idle(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = notifying(
        imap_server,
        b"(selected (MessageNew (UID RFC822.SIZE) MessageExpunge FlagChange))",
        b"INBOX",
    )
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Flagged)")
    assert unsolicited(r, 1) == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"]
    msg = message(3)
    c.append("INBOX", None, None, msg)
    lines = unsolicited(r, 3)
    assert lines[:2] == [b"* 3 EXISTS", b"* 2 RECENT"]
    assert lines[2] == b"* 3 FETCH (UID 3 RFC822.SIZE %d)" % len(msg)
    c.store("2", "+FLAGS", "(\\Deleted)")
    c.expunge()
    # `selected`: the expunge comes at once too (no command is running).
    lines = unsolicited(r, 2)
    assert lines[-1] == b"* 2 EXPUNGE"
    c.logout()


def test_selected_delayed_holds_expunges_until_a_command_allows_them(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    r = notifying(imap_server, b"(selected-delayed (MessageNew MessageExpunge))", b"INBOX")
    c.select("INBOX")
    c.store("2", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.append("INBOX", None, None, message(9))
    # The view still numbers the expunged message: the new one is the third.
    assert unsolicited(r, 2) == [b"* 3 EXISTS", b"* 2 RECENT"]
    out = r.cmd(b"NOOP", b"z")
    assert out[0] == b"* 2 EXPUNGE" and out[-1].startswith(b"z OK")
    c.logout()


def test_without_flagchange_flags_wait_for_a_command(imap_server):
    c = connect(imap_server)
    append_n(c, 1)
    r = notifying(imap_server, b"(selected (MessageNew MessageExpunge))", b"INBOX")
    c.select("INBOX")
    c.store("1", "+FLAGS", "(\\Flagged)")
    c.append("INBOX", None, None, message(2))
    assert unsolicited(r, 2) == [b"* 2 EXISTS", b"* 1 RECENT"]
    out = r.cmd(b"NOOP", b"z")
    assert out[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged")
    c.logout()


def test_idle_carries_notifications_of_other_mailboxes(imap_server):
    c = connect(imap_server)
    c.create("Lists")
    r = notifying(imap_server, b"(subtree Lists (MessageNew MessageExpunge))", b"INBOX")
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    append_n(c, 1, "Lists")
    [line] = unsolicited(r, 1)
    assert status_of(line)[0] == b"Lists"
    # Without a selected filter the selected mailbox is reported as IDLE always does.
    append_n(c, 1, "INBOX")
    assert unsolicited(r, 2) == [b"* 1 EXISTS", b"* 1 RECENT"]
    r.send(b"DONE\r\n")
    assert r.line() == b"i OK IDLE completed"
    c.logout()


def test_idle_without_a_selected_mailbox_carries_notifications(imap_server):
    r = notifying(imap_server, b"(personal (MailboxName))")
    r.send(b"i IDLE\r\n")
    assert r.line() == b"+ idling"
    c = connect(imap_server)
    c.create("Fresh")
    assert unsolicited(r, 1) == [b'* LIST () "/" Fresh']
    r.send(b"DONE\r\n")
    assert r.line() == b"i OK IDLE completed"
    c.logout()


def test_a_created_mailbox_already_subscribed_says_so(imap_server):
    c = connect(imap_server)
    c.subscribe("Future")
    r = notifying(imap_server, b"(personal (MailboxName))")
    c.create("Future")
    assert unsolicited(r, 1) == [b'* LIST (\\Subscribed) "/" Future']
    c.logout()


def test_notify_none_stops_notifications(imap_server):
    r = notifying(imap_server, b"(personal (MessageNew MessageExpunge MailboxName))")
    c = connect(imap_server)
    c.create("One")
    assert unsolicited(r, 1) == [b'* LIST () "/" One']
    assert r.cmd(b"NOTIFY NONE", b"n")[-1].startswith(b"n OK")
    c.create("Two")
    append_n(c, 1, "Sent")
    assert nothing_more(r) == []
    c.logout()


def test_a_new_notify_set_replaces_the_old(imap_server):
    r = notifying(imap_server, b"(personal (MailboxName))")
    out = r.cmd(b"NOTIFY SET (mailboxes Sent (MessageNew MessageExpunge))", b"n")
    assert out[-1].startswith(b"n OK")
    c = connect(imap_server)
    c.create("Quiet")
    append_n(c, 1, "Sent")
    [line] = unsolicited(r, 1)
    assert status_of(line)[0] == b"Sent"
    c.logout()


@pytest.mark.parametrize(
    "args",
    [
        b"",
        b"SET",
        b"BOGUS",
        b"NONE extra",
        b"SET STATUS",
        b"SET (personal)",
        b"SET personal (MessageNew MessageExpunge)",
        b"SET (nowhere (MessageNew MessageExpunge))",
        b"SET (personal (MessageNew))",
        b"SET (personal (MessageExpunge))",
        b"SET (personal (FlagChange))",
        b"SET (personal (MessageNew (UID) MessageExpunge))",
        b"SET (subtree (MessageNew MessageExpunge))",
        b"SET (selected (MessageNew MessageExpunge)) (selected-delayed NONE)",
        b"SET (personal ())",
    ],
)
def test_malformed_notify_is_bad(imap_server, args):
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"NOTIFY " + args if args else b"NOTIFY", b"n")
    assert out[-1].startswith(b"n BAD"), out


@pytest.mark.parametrize(
    "event",
    [b"AnnotationChange", b"MailboxMetadataChange", b"ServerMetadataChange", b"SomethingNew"],
)
def test_unsupported_events_are_no_badevent(imap_server, event):
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b"NOTIFY SET (personal (MessageNew MessageExpunge " + event + b"))", b"n")
    assert out[-1].startswith(
        b"n NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"
    ), out
    # Refused: no NOTIFY in force.
    c = connect(imap_server)
    append_n(c, 1, "Sent")
    assert nothing_more(r) == []
    c.logout()


def test_notify_needs_authentication(imap_server):
    r = Raw(imap_server.port("imap"))
    assert r.cmd(b"NOTIFY NONE", b"n")[-1].startswith(b"n BAD")


def test_a_client_that_stops_reading_overflows_and_costs_only_itself(imap_server):
    """RFC 5465 §5.8: past the bound, [NOTIFICATIONOVERFLOW] and NOTIFY is off; the session
    making the changes and a third one go on undisturbed."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", imap_server.port("imap")))
    slow = Raw.__new__(Raw)
    slow.sock, slow.buf = sock, b""
    slow.sock.settimeout(10)
    slow.greeting = slow.line()
    slow.login()
    busy = Raw(imap_server.port("imap"))
    busy.login()
    # A RENAME of a mailbox with many children is a LIST per child (RFC 5465 §5.4).
    children = 120
    mbox = imap_server.mailbox(USER)
    imap_server.call(mbox.create_folder, "P")
    for i in range(children):
        imap_server.call(mbox.create_folder, f"P/{i:03d}{'x' * 190}")
    out = slow.cmd(b"NOTIFY SET (personal (MailboxName))", b"n")
    assert out[-1].startswith(b"n OK")
    # The kernel holds up to tcp_wmem's maximum for a reader that does not read, then the
    # server's transport its own bound: a few MiB of LIST responses before the session is
    # behind at all, then QUEUE_LIMIT more (about 420 bytes a LIST here).
    kernel = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    renames = (kernel + (1 << 20)) // (children * 420) + 1
    for i in range(renames):
        old, new = (b"P", b"Q") if i % 2 == 0 else (b"Q", b"P")
        assert busy.cmd(b"RENAME %s %s" % (old, new))[-1].startswith(b"t OK")
    other = connect(imap_server)
    assert other.noop()[0] == "OK"
    # Now read what the slow client was sent: LISTs, then the overflow, then nothing more.
    slow.sock.settimeout(5)
    lines = []
    while True:
        line = slow.line()
        lines.append(line)
        if b"NOTIFICATIONOVERFLOW" in line:
            break
    assert lines[-1].startswith(b"* OK [NOTIFICATIONOVERFLOW]")
    assert all(x.startswith(b"* LIST") for x in lines[:-1])
    assert len(lines) - 1 < renames * (children + 1)
    busy.cmd(b"CREATE Later")
    assert nothing_more(slow) == []
    other.logout()


def test_messagenew_attributes_may_ask_for_header_fields_without_setting_seen(imap_server):
    r = notifying(
        imap_server,
        b"(selected (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge))",
        b"INBOX",
    )
    c = connect(imap_server)
    c.append("INBOX", None, None, message(1, subject="pushed"))
    lines = unsolicited(r, 4)
    assert lines[:2] == [b"* 1 EXISTS", b"* 1 RECENT"]
    assert lines[2].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Recent) BODY[HEADER.FIELDS (SUBJECT)] {")
    assert lines[3] == b"Subject: pushed"
    c.select("INBOX")
    assert c.fetch("1", "(FLAGS)")[1] == [b"1 (FLAGS ())"]
    c.logout()


def test_messagenew_attributes_follow_an_exists_sent_at_a_command_end(imap_server):
    r = notifying(imap_server, b"(selected (MessageNew (UID) MessageExpunge))", b"INBOX")
    data = message(1)
    r.send(b"a APPEND INBOX {%d+}\r\n%s\r\n" % (len(data), data))
    out = r.until_tagged(b"a")
    assert out[:3] == [b"* 1 EXISTS", b"* 1 RECENT", b"* 1 FETCH (UID 1)"], out
    assert out[-1].startswith(b"a OK")


# --- inboxes: INBOX and where the Sieve script files mail (RFC 5465 §6) ---------------------

LIST_ID = "List-Id: Dev <dev.lists.example>\r\n"


def lists_script(folder: str) -> bytes:
    return (
        'require ["fileinto", "mailbox"];\n'
        f'if header :contains "List-Id" "dev.lists.example" {{ fileinto :create "{folder}"; }}\n'
    ).encode()


def put_script(srv, text: bytes, name: str = "lists") -> None:
    """Through the admin command: another process, as an administrator would."""
    for args, data in ((("put", USER, name), text), (("activate", USER, name), None)):
        res = srv.cli("sieve", *args, input=data)
        assert res.returncode == 0, res.stderr


def test_inboxes_covers_the_folders_the_sieve_script_files_into_rfc5465_6(full_server):
    put_script(full_server, lists_script("Lists"))
    r = notifying(full_server, b"(inboxes (MessageNew MessageExpunge))")
    start = time.monotonic()
    smtp_deliver(full_server, message(1, extra=LIST_ID))
    [line] = unsolicited(r, 1)
    assert time.monotonic() - start < 1.5
    name, items = status_of(line)
    assert name == b"Lists" and items["MESSAGES"] == 1
    # The script's default (its implicit keep) is INBOX, covered as before.
    smtp_deliver(full_server, message(2))
    assert status_of(unsolicited(r, 1)[0])[0] == b"INBOX"
    # A folder no delivery goes to is not an inbox.
    c = connect(full_server)
    append_n(c, 1, "Archive")
    assert nothing_more(r) == []
    c.logout()


def test_inboxes_follow_a_script_changed_over_managesieve(full_server, monkeypatch):
    put_script(full_server, lists_script("Lists"))
    r = notifying(full_server, b"(inboxes (MessageNew MessageExpunge))")
    monkeypatch.setenv("SSL_CERT_FILE", str(full_server.config.tls.cert))
    sieve = sievelib_client(full_server, USER)
    assert sieve.putscript("lists", lists_script("Dev").decode()), sieve.errmsg
    sieve.logout()
    start = time.monotonic()
    smtp_deliver(full_server, message(1, extra=LIST_ID))
    [line] = unsolicited(r, 1)
    # At once, not at the next periodic look at the script.
    assert time.monotonic() - start < 2.5
    assert status_of(line)[0] == b"Dev"
    assert full_server.message_files(USER, "Lists") == []


def test_inboxes_follow_a_script_changed_and_used_by_other_programs(imap_server):
    """The admin command changes the script and delivers (two other processes): the session
    learns of the new inbox at its next look at the script and tells its STATUS."""
    r = notifying(imap_server, b"(inboxes (MessageNew MessageExpunge))")
    put_script(imap_server, lists_script("Lists"))
    res = imap_server.cli("deliver", "--to", USER, input=message(1, extra=LIST_ID))
    assert res.returncode == 0, res.stderr
    assert len(imap_server.message_files(USER, "Lists")) == 1
    [line] = unsolicited(r, 1, seconds=12)
    name, items = status_of(line)
    assert name == b"Lists" and items["MESSAGES"] == 1
