"""Sieve at delivery, end to end: real messages over SMTP (smtplib) into a real server, the
script placed with ScriptStore, results read from the Maildir, the queue and a scripted remote
SMTP server."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import time

import pytest

from mailsuite.relay.runner import QueueRunner
from tests.relay.relay_support import sink, sink_tls, tls_options  # noqa: F401

USER = "alice@example.test"


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def script_store(srv, address: str = USER):
    return srv.services.delivery.sieve.scripts(srv.services.store.path_for(address))


def activate(srv, text: str, address: str = USER, name: str = "main") -> None:
    store = script_store(srv, address)
    store.put(name, text)
    store.activate(name)


def send(srv, msg: bytes, rcpts=(USER,), sender: str = "bob@remote.test") -> None:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
        s.sendmail(sender, list(rcpts), msg)


def message(subject: str = "hello", extra: str = "", body: str = "Hello there.") -> bytes:
    return (
        f"From: Bob <bob@remote.test>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{time.monotonic_ns()}@remote.test>\r\n"
        f"Date: Sat, 05 Dec 2026 10:11:12 +0100\r\n{extra}\r\n{body}\r\n"
    ).encode()


def flags_of(srv, folder: str = "INBOX", address: str = USER) -> list[str]:
    return [p.name.partition(":2,")[2] for p in srv.message_files(address, folder)]


def queued(srv) -> list:
    queue = srv.services.queue
    return [queue.load(i) for i in queue.ids()]


@pytest.fixture
def srv(server_factory):
    # Remote mail waits in the queue (the route's port refuses), where the tests look at it.
    s = server_factory(relay={"routes": {"remote.test": "127.0.0.1:1"}})
    s.add_user(USER)
    return s


@pytest.fixture
def relaying(server_factory, sink):  # noqa: F811
    """A server whose remote.test mail goes to the scripted sink, DKIM keys for its domain."""
    from mailsuite.trust import dkim

    s = server_factory(relay={"routes": {"remote.test": f"127.0.0.1:{sink.port}"}})
    s.add_user(USER)
    dkim.generate_key(s.config, "example.test", "sieve1", "rsa")
    for service in s.server:
        if isinstance(service, QueueRunner):
            service.signing_possible.checked = 0.0
    return s


# -- filing ---------------------------------------------------------------------------------


def test_fileinto_sorts_a_list_into_its_folder(srv):
    srv.call(srv.mailbox(USER).create_folder, "Lists")
    activate(
        srv,
        'require "fileinto";\nif exists "list-id" { fileinto "Lists"; }\n',
    )
    send(srv, message(extra="List-Id: <dev.remote.test>\r\n"))
    send(srv, message("personal"))
    assert len(srv.messages(USER, "Lists")) == 1
    assert len(srv.messages(USER)) == 1
    assert b"personal" in srv.messages(USER)[0]


def test_fileinto_create_makes_the_folder_rfc5490(srv):
    activate(srv, 'require ["fileinto", "mailbox"];\nfileinto :create "Archive/2026";\n')
    send(srv, message())
    assert srv.mailbox(USER).exists("Archive/2026")
    assert len(srv.messages(USER, "Archive/2026")) == 1
    assert srv.messages(USER) == []


def test_fileinto_missing_folder_without_create_is_an_error_kept_in_inbox(srv):
    activate(srv, 'require "fileinto";\nfileinto "Nowhere";\n')
    send(srv, message())
    assert len(srv.messages(USER)) == 1
    status = script_store(srv).status()
    assert status["script"] == "main" and "Nowhere" in status["error"]


def test_mailboxexists_and_specialuse_rfc8579(srv):
    activate(
        srv,
        'require ["fileinto", "mailbox", "special-use", "imap4flags"];\n'
        'if allof (mailboxexists "Trash", specialuse_exists "\\\\Junk") {\n'
        '  fileinto :specialuse "\\\\Junk" :create "SpamBox"; }\n',
    )
    send(srv, message())
    assert len(srv.messages(USER, "Junk")) == 1
    assert not srv.mailbox(USER).exists("SpamBox")


def test_imap4flags_sets_flags_on_the_stored_message_rfc5232(srv):
    activate(
        srv,
        'require ["imap4flags", "fileinto"];\n'
        'addflag "\\\\Flagged";\naddflag ["$Important", "\\\\Seen"];\nremoveflag "\\\\Seen";\n'
        'if hasflag :contains "\\\\Flagged" { keep; }\n',
    )
    send(srv, message())
    (info,) = flags_of(srv)
    assert "F" in info and "S" not in info
    assert srv.mailbox(USER).folder("INBOX").messages[0].flags >= {"\\Flagged", "$Important"}


def test_keep_flags_and_fileinto_copy_make_two_copies_rfc3894(srv):
    srv.call(srv.mailbox(USER).create_folder, "Copies")
    activate(
        srv,
        'require ["fileinto", "copy", "imap4flags"];\nfileinto :copy :flags "\\\\Seen" "Copies";\n',
    )
    send(srv, message())
    assert flags_of(srv, "Copies") == ["S"]
    assert len(srv.messages(USER)) == 1


def test_discard_stores_nothing(srv):
    activate(srv, 'if header :contains "subject" "spam" { discard; stop; }\n')
    send(srv, message("buy spam now"))
    send(srv, message("ham"))
    assert len(srv.messages(USER)) == 1


def test_subaddress_files_by_detail_rfc5233(srv):
    activate(
        srv,
        'require ["fileinto", "envelope", "subaddress", "variables", "mailbox"];\n'
        'if envelope :detail :matches "to" "*" { fileinto :create "plus/${1}"; }\n',
    )
    send(srv, message(), rcpts=["alice+shop@example.test"])
    assert len(srv.messages(USER, "plus/shop")) == 1


def test_address_localpart_and_domain(srv):
    srv.call(srv.mailbox(USER).create_folder, "Remote")
    activate(
        srv,
        'require "fileinto";\n'
        'if allof (address :domain "from" "remote.test", address :localpart "from" "bob") '
        '{ fileinto "Remote"; }\n',
    )
    send(srv, message())
    assert len(srv.messages(USER, "Remote")) == 1


def test_body_test_rfc5173(srv):
    srv.call(srv.mailbox(USER).create_folder, "Invoices")
    activate(
        srv,
        'require ["body", "fileinto"];\nif body :text :contains "invoice #42" '
        '{ fileinto "Invoices"; }\n',
    )
    send(srv, message(body="Please find the INVOICE #42 attached."))
    send(srv, message(body="Nothing here."))
    assert len(srv.messages(USER, "Invoices")) == 1
    assert len(srv.messages(USER)) == 1


def test_relational_and_ascii_numeric_sort_on_spam_score_rfc5231(srv):
    activate(
        srv,
        'require ["relational", "comparator-i;ascii-numeric", "fileinto"];\n'
        'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" '
        '{ fileinto "Junk"; }\n',
    )
    send(srv, message("a", "X-Spam-Score: 12\r\n"))
    send(srv, message("b", "X-Spam-Score: 3\r\n"))
    assert len(srv.messages(USER, "Junk")) == 1
    assert len(srv.messages(USER)) == 1


def test_date_and_index_rfc5260(srv):
    activate(
        srv,
        'require ["date", "index", "fileinto", "relational", "variables", "mailbox"];\n'
        'if date :originalzone :index 1 "date" "year" "2026" {\n'
        '  if currentdate :value "ge" "year" "2000" {\n'
        '    if date :originalzone "date" "date" "*" {}\n'
        '    if date :originalzone :matches "date" "date" "*" '
        '{ fileinto :create "by-date/${1}"; } } }\n',
    )
    send(srv, message())
    assert len(srv.messages(USER, "by-date/2026-12-05")) == 1


def test_variables_and_encoded_character_rfc5229(srv):
    activate(
        srv,
        'require ["variables", "fileinto", "mailbox", "encoded-character"];\n'
        'if header :matches "subject" "[*] *" {\n'
        '  set :lower :upperfirst "list" "${1}";\n'
        '  fileinto :create "${list}${hex:2d}x"; }\n',
    )
    send(srv, message("[DEVEL] news"))
    assert len(srv.messages(USER, "Devel-x")) == 1


def test_regex_match_type(srv):
    activate(
        srv,
        'require ["regex", "variables", "fileinto", "mailbox"];\n'
        'if header :regex "subject" "^Ticket #([0-9]+)" { fileinto :create "T${1}"; }\n',
    )
    send(srv, message("Ticket #981 opened"))
    assert len(srv.messages(USER, "T981")) == 1


def test_editheader_changes_the_stored_message_rfc5293(srv):
    activate(
        srv,
        'require ["editheader", "imap4flags"];\n'
        'deleteheader "x-tracking";\naddheader "X-Filtered" "by sieve";\n'
        'addheader :last "X-Note" "caf\u00e9";\n'
        'if header :is "x-filtered" "by sieve" { addflag "\\\\Flagged"; }\n',
    )
    send(srv, message(extra="X-Tracking: 1234\r\n"))
    (raw,) = srv.messages(USER)
    assert b"X-Tracking" not in raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["X-Filtered"] == "by sieve"
    assert str(parsed["X-Note"]) == "caf\u00e9"
    assert flags_of(srv) == ["F"]


def test_duplicate_drops_the_second_copy_rfc7352(srv):
    activate(srv, 'require "duplicate";\nif duplicate { discard; }\n')
    msg = message()
    send(srv, msg)
    send(srv, msg)
    assert len(srv.messages(USER)) == 1


def test_include_personal_and_global_rfc6609(server_factory, tmp_path):
    global_dir = tmp_path / "global-sieve"
    global_dir.mkdir()
    (global_dir / "junk.sieve").write_text(
        'require ["fileinto", "variables", "include"];\nglobal "verdict";\n'
        'if header :contains "subject" "viagra" { set "verdict" "spam"; fileinto "Junk"; }\n'
    )
    srv = server_factory(sieve={"global_dir": str(global_dir)})
    srv.add_user(USER)
    store = script_store(srv)
    store.put(
        "lists",
        'require ["fileinto", "include"];\nif exists "list-id" { fileinto "Trash"; return; }\n',
    )
    activate(
        srv,
        'require ["include", "variables", "imap4flags"];\nglobal "verdict";\n'
        'include :global "junk";\ninclude :personal :once "lists";\n'
        'if string :is "${verdict}" "spam" { addflag "\\\\Seen"; stop; }\n'
        'include :optional "missing";\n',
    )
    send(srv, message("cheap viagra"))
    send(srv, message("list mail", "List-Id: <l.remote.test>\r\n"))
    assert len(srv.messages(USER, "Junk")) == 1
    assert len(srv.messages(USER, "Trash")) == 1
    assert srv.messages(USER) == []


# -- errors never lose mail -------------------------------------------------------------------


def test_runtime_error_keeps_in_inbox_and_sets_status(srv, logs):
    activate(srv, 'require "fileinto";\ndiscard;\nfileinto "No/Such/Folder";\n')
    send(srv, message())
    assert len(srv.messages(USER)) == 1
    status = script_store(srv).status()
    assert "does not exist" in status["error"]
    assert logs.matching("failed, message kept in INBOX")


def test_step_budget_exhaustion_keeps_in_inbox(srv):
    # Each wildcard match over the 30 KB body costs its share of the run's steps.
    key = "*needle" * 20
    activate(srv, 'require "body";\n' + f'if body :matches "{key}" {{ discard; }}\n' * 10)
    send(srv, message(body=("hay " * 15 + "\r\n") * 500))
    assert len(srv.messages(USER)) == 1
    assert "too long" in script_store(srv).status()["error"]


def test_script_that_no_longer_parses_keeps_in_inbox(srv):
    activate(srv, "discard;")
    folder = script_store(srv).folder
    index = json.loads((folder / "index.json").read_text())
    (folder / index["scripts"]["main"]).write_text("this is not sieve")
    send(srv, message())
    assert len(srv.messages(USER)) == 1
    assert script_store(srv).status()["script"] == "main"


def test_disabled_sieve_ignores_scripts(server_factory):
    srv = server_factory(sieve={"enabled": False})
    srv.add_user(USER)
    activate(srv, "discard;")
    send(srv, message())
    assert len(srv.messages(USER)) == 1


# -- reject ------------------------------------------------------------------------------------


def test_reject_single_recipient_is_550_at_smtp_time_rfc5429(srv):
    activate(srv, 'require "reject";\nreject "I do not want this.";\n')
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(srv, message())
    assert e.value.smtp_code == 550
    assert b"5.7.1" in e.value.smtp_error and b"I do not want this." in e.value.smtp_error
    assert srv.messages(USER) == []


def test_ereject_with_two_recipients_sends_a_failure_notice(srv):
    srv.add_user("carol@example.test")
    srv.add_user("dave@example.test")
    activate(srv, 'require "ereject";\nereject "No thanks";\n')
    send(srv, message(), rcpts=[USER, "carol@example.test"], sender="dave@example.test")
    assert srv.messages(USER) == []
    assert len(srv.messages("carol@example.test")) == 1
    assert wait_for(lambda: len(srv.messages("dave@example.test")) == 1)
    notice = email.message_from_bytes(srv.messages("dave@example.test")[0])
    status = next(p for p in notice.walk() if p.get_content_type() == "message/delivery-status")
    fields = dict(status.get_payload()[1].items())
    assert fields["Status"] == "5.7.1" and fields["Action"] == "failed"


def test_reject_of_a_bounce_is_a_discard(srv):
    activate(srv, 'require "reject";\nreject "no";\n')
    send(srv, message(), sender="")
    assert srv.messages(USER) == []
    assert queued(srv) == []


# -- redirect ----------------------------------------------------------------------------------


def test_redirect_goes_through_the_queue_dkim_signed(relaying, sink):  # noqa: F811
    activate(relaying, 'redirect "friend@remote.test";\n')
    send(relaying, message())
    assert relaying.messages(USER) == []
    assert wait_for(lambda: len(sink.transactions) == 1)
    (t,) = sink.transactions
    assert t.rcpts == ["friend@remote.test"]
    assert f"<{USER}>" in t.mail_from  # the account's address: no SRS, bounces return to it
    assert t.data.startswith(b"DKIM-Signature:") or b"DKIM-Signature:" in t.data
    assert f"Delivered-To: {USER}".encode() in t.data
    assert b"Subject: hello" in t.data


def test_redirect_copy_keeps_a_local_copy_rfc3894(srv):
    activate(srv, 'require "copy";\nredirect :copy "friend@remote.test";\n')
    send(srv, message())
    assert len(srv.messages(USER)) == 1
    (entry,) = queued(srv)
    assert [r.address for r in entry.recipients] == ["friend@remote.test"]


def test_redirect_limit_is_an_error(server_factory):
    srv = server_factory(
        sieve={"max_redirects": 2}, relay={"routes": {"remote.test": "127.0.0.1:1"}}
    )
    srv.add_user(USER)
    activate(srv, "".join(f'redirect "r{i}@remote.test";\n' for i in range(3)))
    send(srv, message())
    assert len(srv.messages(USER)) == 1
    assert queued(srv) == []
    assert "too many redirects" in script_store(srv).status()["error"]


def test_redirect_loop_between_two_accounts_stops(srv):
    srv.add_user("bob@example.test")
    activate(srv, 'redirect "bob@example.test";\n')
    activate(srv, f'redirect "{USER}";\n', address="bob@example.test")
    send(srv, message())
    # alice -> bob -> alice: alice sees her own Delivered-To and keeps it.
    assert wait_for(lambda: len(srv.messages(USER)) == 1)
    assert srv.messages("bob@example.test") == []
    assert "loop" in script_store(srv).status()["error"]


# -- vacation ----------------------------------------------------------------------------------

VACATION = 'require "vacation";\nvacation :days 3 :subject "Away" "I am away until Monday.";\n'


def test_vacation_reply_is_queued_and_leaves_dkim_signed_rfc5230(relaying, sink):  # noqa: F811
    activate(relaying, VACATION)
    send(relaying, message("question"))
    assert len(relaying.messages(USER)) == 1
    assert wait_for(lambda: len(sink.transactions) == 1)
    (t,) = sink.transactions
    assert t.mail_from.startswith("MAIL FROM:<>") and t.rcpts == ["bob@remote.test"]
    assert t.data.startswith(b"DKIM-Signature:")
    assert b"d=example.test" in t.data
    reply = email.message_from_bytes(t.data)
    assert reply["Subject"] == "Away"
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["In-Reply-To"]
    assert reply["From"] == USER
    assert "away until Monday" in reply.get_payload()


def test_vacation_once_per_sender_per_period(srv):
    activate(srv, VACATION)
    send(srv, message("one"))
    send(srv, message("two"))
    send(srv, message("three"), sender="carol@remote.test")
    replies = queued(srv)
    assert sorted(r.recipients[0].address for r in replies) == [
        "bob@remote.test",
        "carol@remote.test",
    ]
    assert all(r.mail_from == "" for r in replies)
    assert len(srv.messages(USER)) == 3


def test_vacation_seconds_with_zero_minimum_replies_again_rfc6131(server_factory):
    srv = server_factory(
        sieve={"vacation_min_days": 0}, relay={"routes": {"remote.test": "127.0.0.1:1"}}
    )
    srv.add_user(USER)
    activate(srv, 'require ["vacation", "vacation-seconds"];\nvacation :seconds 0 "away";\n')
    send(srv, message("one"))
    send(srv, message("two"))
    assert len(queued(srv)) == 2


@pytest.mark.parametrize(
    "extra,sender",
    [
        ("List-Id: <dev.remote.test>\r\n", "bob@remote.test"),
        ("Precedence: bulk\r\n", "bob@remote.test"),
        ("Auto-Submitted: auto-generated\r\n", "bob@remote.test"),
        ("", ""),
        ("", "MAILER-DAEMON@remote.test"),
        ("", "owner-dev@remote.test"),
        ("", "dev-request@remote.test"),
    ],
    ids=["list-id", "bulk", "auto-submitted", "null-sender", "daemon", "owner", "request"],
)
def test_vacation_never_answers_lists_bulk_or_automatic_mail_rfc3834(srv, extra, sender):
    activate(srv, VACATION)
    send(srv, message(extra=extra), sender=sender)
    assert len(srv.messages(USER)) == 1
    assert queued(srv) == []


def test_vacation_only_when_addressed_to_the_user_rfc5230_4_5(srv):
    activate(srv, VACATION)
    msg = message().replace(f"To: {USER}".encode(), b"To: list@remote.test")
    send(srv, msg)
    assert queued(srv) == []
    activate(
        srv,
        'require "vacation";\nvacation :addresses "list@remote.test" "away";\n',
    )
    send(srv, msg)
    assert len(queued(srv)) == 1


def test_vacation_state_lives_in_the_account_sieve_folder(srv):
    activate(srv, VACATION)
    send(srv, message())
    folder = script_store(srv).folder
    assert folder == srv.services.store.path_for(USER) / "sieve"
    assert len(list((folder / "vacation").iterdir())) == 1
    assert oct((folder / "index.json").stat().st_mode & 0o777) == "0o600"


def test_script_runs_for_mailsuite_deliver(server_factory):
    srv = server_factory()
    srv.add_user(USER)
    activate(srv, 'require "fileinto";\nfileinto "Trash";\n')
    result = srv.cli("deliver", "--from", "bob@remote.test", "--to", USER, input=message())
    assert result.returncode == 0, result.stderr
    assert len(srv.messages(USER, "Trash")) == 1


def test_implicit_keep_goes_to_the_folder_delivery_chose(server_factory):
    """`mailsuite deliver --folder Junk` (as the junk verdict does) moves the implicit keep."""
    srv = server_factory()
    srv.add_user(USER)
    activate(srv, "if false { discard; }\n")
    result = srv.cli(
        "deliver", "--from", "bob@remote.test", "--folder", "Junk", "--to", USER, input=message()
    )
    assert result.returncode == 0, result.stderr
    assert len(srv.messages(USER, "Junk")) == 1


# -- the recipes of docs/filtering.md ------------------------------------------------------------


def test_docs_recipe_lists_into_folders(srv):
    activate(
        srv,
        'require ["fileinto", "mailbox", "variables"];\n'
        'if header :matches "list-id" "*<*.*>*" {\n    fileinto :create "Lists/${2}";\n    stop;\n}\n',
    )
    send(srv, message(extra="List-Id: Devel list <devel.lists.example.org>\r\n"))
    assert len(srv.messages(USER, "Lists/devel")) == 1


def test_docs_recipe_subaddress(srv):
    activate(
        srv,
        'require ["fileinto", "envelope", "subaddress", "mailbox", "variables"];\n'
        'if envelope :detail :matches "to" "*" {\n'
        '    if string :is "${1}" "" { keep; stop; }\n'
        '    fileinto :create "Plus/${1}";\n}\n',
    )
    send(srv, message(), rcpts=["alice+shop@example.test"])
    send(srv, message(), rcpts=["alice+@example.test"])
    send(srv, message())
    assert len(srv.messages(USER, "Plus/shop")) == 1
    assert len(srv.messages(USER)) == 2


def test_docs_recipe_spam_override(server_factory):
    srv = server_factory()
    srv.add_user(USER)
    activate(
        srv,
        'require ["fileinto", "relational", "comparator-i;ascii-numeric"];\n'
        'if address :domain "from" "remote.test" { fileinto "INBOX"; stop; }\n'
        'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "8" { discard; }\n',
    )
    result = srv.cli(
        "deliver", "--from", "bob@remote.test", "--folder", "Junk", "--to", USER, input=message()
    )
    assert result.returncode == 0, result.stderr
    assert len(srv.messages(USER)) == 1 and srv.messages(USER, "Junk") == []
