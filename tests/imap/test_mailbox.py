"""CREATE/DELETE/RENAME/SUBSCRIBE/LIST/LSUB/STATUS (RFC 3501 §6.3), LIST-EXTENDED (5258),
LIST-STATUS (5819), SPECIAL-USE (6154), CHILDREN (3348), STATUS=SIZE (8438), modified UTF-7."""

from imapclient import IMAPClient

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import USER, Raw, append_n, connect


def client(srv) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=srv.port("imap"), ssl=False, timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    return c


def test_default_folders_carry_special_use_rfc6154(imap_server):
    c = client(imap_server)
    folders = {name: flags for flags, _, name in c.list_folders()}
    assert b"\\Sent" in folders["Sent"] and b"\\Trash" in folders["Trash"]
    assert c.find_special_folder(b"\\Junk") == "Junk"
    assert folders["INBOX"] == (b"\\HasNoChildren",)


def test_create_nested_and_children_attributes_rfc3348(imap_server):
    c = client(imap_server)
    c.create_folder("Projects/2024/Q1")
    folders = {name: flags for flags, delim, name in c.list_folders()}
    assert b"\\HasChildren" in folders["Projects"]
    assert b"\\HasChildren" in folders["Projects/2024"]
    assert b"\\HasNoChildren" in folders["Projects/2024/Q1"]
    # "%" stops at the separator, "*" does not (RFC 3501 §6.3.8).
    assert [n for _, _, n in c.list_folders("", "Projects/%")] == ["Projects/2024"]
    assert len(c.list_folders("Projects/", "*")) == 2


def test_create_existing_is_no_alreadyexists(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"CREATE Sent")[-1].startswith(b"t NO [ALREADYEXISTS]")
    assert r.cmd(b"CREATE inbox")[-1].startswith(b"t NO")


def test_mailbox_names_cannot_escape_the_maildir(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    for bad in (b'"../../etc"', b'"a/../../b"', b'"~root"', b'"a//b"'):
        out = r.cmd(b"CREATE " + bad)
        assert out[-1].startswith(b"t NO"), (bad, out)
    assert r.cmd(b'SELECT "../x"')[-1].startswith(b"t NO")
    root = imap_server.services.store.path_for(USER)
    assert not (root.parent.parent / "etc").exists()


def test_modified_utf7_names_round_trip(imap_server):
    c = client(imap_server)
    c.create_folder("Entwürfe/Übersicht")
    names = [n for _, _, n in c.list_folders()]
    assert "Entwürfe/Übersicht" in names
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b'LIST "" "Entw*"')
    assert b'"/" Entw&APw-rfe/&ANw-bersicht' in b"\n".join(out)
    assert c.select_folder("Entwürfe/Übersicht")[b"EXISTS"] == 0


def test_delete_and_rename_rfc3501(imap_server):
    c = client(imap_server)
    c.create_folder("Old/Child")
    append_n(connect(imap_server), 2, "Old")
    c.rename_folder("Old", "New")
    names = [n for _, _, n in c.list_folders()]
    assert "New" in names and "New/Child" in names and "Old" not in names
    assert c.folder_status("New", ["MESSAGES"])[b"MESSAGES"] == 2
    c.delete_folder("New/Child")
    assert "New/Child" not in [n for _, _, n in c.list_folders()]
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"DELETE INBOX")[-1].startswith(b"t NO")
    assert r.cmd(b"DELETE Nope")[-1].startswith(b"t NO [NONEXISTENT]")


def test_rename_inbox_moves_its_messages(imap_server):
    c = connect(imap_server)
    append_n(c, 2)
    assert c.rename("INBOX", "OldInbox")[0] == "OK"
    assert c.status("OldInbox", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 2)")
    assert c.status("INBOX", "(MESSAGES)")[1][0].endswith(b"(MESSAGES 0)")


def test_subscribe_lsub_and_list_subscribed(imap_server):
    c = client(imap_server)
    c.create_folder("A/B")
    c.subscribe_folder("A/B")
    c.subscribe_folder("INBOX")
    subscribed = {n for _, _, n in c.list_sub_folders()}
    assert {"A/B", "INBOX"} <= subscribed and "A" not in subscribed
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b'LSUB "" "%"')
    assert b'* LSUB (\\Noselect) "/" A' in out
    out = r.cmd(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert any(b'"/" A ("CHILDINFO" ("SUBSCRIBED"))' in line for line in out), out
    out = r.cmd(b'LIST "" "*" RETURN (SUBSCRIBED)')
    assert any(b"\\Subscribed" in line and line.endswith(b" A/B") for line in out)
    c.unsubscribe_folder("A/B")
    assert {n for _, _, n in c.list_sub_folders()} == subscribed - {"A/B"}


def test_list_special_use_selection_rfc6154(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b'LIST (SPECIAL-USE) "" "*"')
    names = sorted(line.rsplit(b" ", 1)[1] for line in out if line.startswith(b"* LIST"))
    assert names == [b"Archive", b"Drafts", b"Junk", b"Sent", b"Trash"]


def test_create_special_use_rfc6154(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b"CREATE Important (USE (\\Flagged))")[-1].startswith(b"t OK")
    assert r.cmd(b"CREATE Other (USE (\\Bogus))")[-1].startswith(b"t NO [USEATTR]")
    out = r.cmd(b'LIST "" Important')
    assert b"\\Flagged" in out[0]


def test_empty_pattern_returns_delimiter(imap_server):
    r = Raw(imap_server.port("imap"))
    r.login()
    assert r.cmd(b'LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'


def test_status_items_including_size_rfc8438(imap_server):
    c = connect(imap_server)
    append_n(c, 3)
    typ, data = c.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE)")
    assert typ == "OK"
    text = data[0].decode()
    assert "MESSAGES 3" in text and "UIDNEXT 4" in text and "UNSEEN 3" in text
    size = int(text.split("SIZE ")[1].split()[0].rstrip(")"))
    c.select("INBOX")
    sizes = c.fetch("1:*", "(RFC822.SIZE)")[1]
    assert size == sum(int(s.split(b"RFC822.SIZE ")[1].rstrip(b")")) for s in sizes)
    assert c.status("Nope", "(MESSAGES)")[0] == "NO"


def test_list_status_rfc5819(imap_server):
    append_n(connect(imap_server), 2)
    r = Raw(imap_server.port("imap"))
    r.login()
    out = r.cmd(b'LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    assert b"* STATUS INBOX (MESSAGES 2 UNSEEN 2)" in out
    assert b"* STATUS Sent (MESSAGES 0 UNSEEN 0)" in out
