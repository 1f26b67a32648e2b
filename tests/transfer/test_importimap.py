"""`mailsuite import imap` from a second running mailsuite over IMAPS, into a running one."""

from __future__ import annotations

from mailsuite.transfer.imapresponse import ListEntry, parse_fetch, parse_list
from mailsuite.transfer.importimap import (
    batches,
    destination,
    local_name,
    message_id,
    parse_internaldate,
)
from tests.conftest import DEFAULT_PASSWORD

SOURCE = [
    ("INBOX", b"Subject: one\nMessage-ID: <1@src.test>\n\nhello\n", ["\\Seen"], 1_700_000_000),
    (
        "INBOX",
        b"Subject: two\nMessage-ID: <2@src.test>\n\nFrom x\n",
        ["\\Answered", "work"],
        1_700_000_100,
    ),
    # A true duplicate (same Message-ID, date, size): both copies must arrive, once.
    (
        "INBOX",
        b"Subject: two\nMessage-ID: <2@src.test>\n\nFrom x\n",
        ["\\Answered", "work"],
        1_700_000_100,
    ),
    ("INBOX", b"Subject: no id\n\nnone\n", [], 1_700_000_200),
    (
        "Lists/Été",
        b"Subject: nested\nMessage-ID: <3@src.test>\n\n\xc3\xa9\n",
        ["\\Flagged"],
        1_650_000_000,
    ),
    (
        "Sent",
        b"Subject: sent\nMessage-ID: <4@src.test>\n\nbye\n",
        ["\\Seen", "$Forwarded"],
        1_600_000_000,
    ),
]


def contents(srv, address, folder):
    def read():
        f = srv.services.store.mailbox(address).folder(folder)
        f.refresh(force=True)
        return sorted((m.flags, int(m.internaldate), f.read(m)) for m in f.messages)

    return srv.call(read)


def run_import(src, dst, password: str = DEFAULT_PASSWORD, insecure: bool = True):
    return dst.cli(
        "import",
        "imap",
        "--host",
        "127.0.0.1",
        "--port",
        str(src.port("imaps")),
        "--user",
        "alice@example.test",
        "--user-to",
        "bob@example.test",
        *(["--insecure"] if insecure else []),
        "--password-stdin",
        input=password.encode() + b"\n",
    )


def test_import_from_a_second_mailsuite_then_resume(server_factory):
    src = server_factory("src")
    src.add_user("alice@example.test")
    box = src.mailbox("alice@example.test")
    src.call(box.create_folder, "Lists/Été")
    for folder, data, flags, date in SOURCE:
        box.deliver(data, folder, flags, date)
    dst = server_factory("dst")
    dst.add_user("bob@example.test")

    r = run_import(src, dst)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("imported 6 messages"), r.stdout
    for folder in ("INBOX", "Lists/Été", "Sent", "Drafts"):
        assert contents(dst, "bob@example.test", folder) == contents(
            src, "alice@example.test", folder
        ), folder

    # Resumable: a second run copies nothing ...
    r = run_import(src, dst)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("imported 0 messages") and "6 already present" in out, out
    # ... and after new mail arrives at the source, only that.
    box.deliver(b"Subject: late\nMessage-ID: <5@src.test>\n\nnew\n", "INBOX", [], 1_700_000_300)
    r = run_import(src, dst)
    assert r.stdout.decode().startswith("imported 1 message "), r.stdout
    assert contents(dst, "bob@example.test", "INBOX") == contents(
        src, "alice@example.test", "INBOX"
    )


def test_wrong_password_is_one_plain_line_and_exit_77(server_factory):
    src = server_factory("src")
    src.add_user("alice@example.test")
    dst = server_factory("dst")
    dst.add_user("bob@example.test")
    r = run_import(src, dst, password="wrong")
    assert r.returncode == 77  # EX_NOPERM: the remote server refused the login
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1
    err = r.stderr.decode()
    assert "refused the login of alice@example.test: [AUTHENTICATIONFAILED]" in err
    assert "b'" not in err and 'b"' not in err


def test_certificate_is_verified_by_default(server_factory):
    src = server_factory("src")
    src.add_user("alice@example.test")
    dst = server_factory("dst")
    dst.add_user("bob@example.test")
    r = run_import(src, dst, insecure=False)
    assert r.returncode == 75 and b"CERTIFICATE_VERIFY_FAILED" in r.stderr


def test_fetch_and_list_responses_with_literals():
    items = [
        (
            b"1 (UID 9 FLAGS (\\Seen $X) BODY[HEADER.FIELDS (MESSAGE-ID)] {20}",
            b"Message-ID: <a@b>\r\n",
        ),
        b' INTERNALDATE " 2-Jan-2023 03:04:05 -0100")',
        b"2 (UID 10 FLAGS () BODY[] NIL)",
    ]
    a, b = parse_fetch(items)
    assert a["UID"] == b"9" and a["FLAGS"] == [b"\\Seen", b"$X"]
    assert (
        parse_internaldate(a["INTERNALDATE"]) == 1672632245.0
    )  # 03:04:05 at -0100 is 04:04:05 UTC
    assert message_id(a["BODY[HEADER.FIELDS (MESSAGE-ID)]"].data) == b"<a@b>"
    assert b["BODY[]"] is None
    entries = parse_list(
        [(b'(\\HasNoChildren) "." {10}', b"INBOX.Sent"), b"", b'(\\Noselect) NIL "x \\"y\\""']
    )
    assert entries == [
        ListEntry(("\\HasNoChildren",), ".", b"INBOX.Sent"),
        ListEntry(("\\Noselect",), None, b'x "y"'),
    ]
    assert local_name(entries[0], strip_inbox_prefix=True) == "Sent"
    assert local_name(ListEntry((), ".", b"A.&AMk-t&AOk-"), False) == "A/Été"


def test_special_use_folders_land_in_ours_whatever_their_name(server_factory):
    src = server_factory("src")
    src.add_user("alice@example.test")
    box = src.mailbox("alice@example.test")
    src.call(box.create_folder, "Gesendete Objekte", "\\Sent")
    box.deliver(b"Subject: gesendet\nMessage-ID: <g@src.test>\n\nx\n", "Gesendete Objekte")
    dst = server_factory("dst")
    dst.add_user("bob@example.test")
    r = run_import(src, dst)
    assert r.returncode == 0, r.stderr
    assert [m[2] for m in contents(dst, "bob@example.test", "Sent")] == [
        b"Subject: gesendet\nMessage-ID: <g@src.test>\n\nx\n"
    ]
    assert "Gesendete Objekte" not in dst.call(dst.mailbox("bob@example.test").list_folders)


def test_destination_mapping_and_keep_names():
    roles = {"\\sent": "Sent", "\\trash": "Trash"}
    gmail = ListEntry(("\\HasNoChildren", "\\Sent"), "/", b"[Gmail]/Sent Mail")
    assert destination(gmail, False, roles) == "Sent"
    assert destination(gmail, False, roles, keep_names=True) == "[Gmail]/Sent Mail"
    assert destination(ListEntry(("\\Junk",), "/", b"Spam"), False, roles) == "Spam"


def test_fetch_batches_bounded_by_count_and_bytes():
    big = 10 * 1024 * 1024
    todo = [(i, [], None, big if i in (1, 2, 3) else 100) for i in range(1, 120)]
    got = batches(todo)
    assert [len(b) for b in got] == [1, 1, 50, 50, 17]
    assert [item for b in got for item in b] == todo
