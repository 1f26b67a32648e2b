"""`mailsuite import users`: Dovecot passwd-file hashes carried over; users log in unchanged."""

from __future__ import annotations

import imaplib

from passlib.hash import bcrypt, sha512_crypt  # rounds as Dovecot writes them by default

from tests.conftest import client_tls_context


def test_dovecot_hashes_let_users_log_in_over_imap(server_factory, tmp_path):
    srv = server_factory("users")
    passwd = tmp_path / "passwd"
    passwd.write_text(
        "# Dovecot passwd-file\n"
        f"old1@example.test:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=5000).hash('first pw')}:1000:1000::/home/old1::\n"
        f"old2@example.test:{{BLF-CRYPT}}{bcrypt.using(rounds=5).hash('second pw')}\n"
        "broken line without a hash\n"
        "plain@example.test:{PLAIN}secret\n"
        f"x@elsewhere.test:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=5000).hash('x')}\n"
    )
    r = srv.cli("import", "users", str(passwd))
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().startswith("imported 2 users"), r.stdout
    assert r.stdout.decode().count("skipped") == 1 and "3 skipped" in r.stdout.decode()
    assert b"hash scheme {PLAIN} not supported" in r.stderr
    assert b"elsewhere.test is not a local domain" in r.stderr

    for user, pw in (("old1@example.test", "first pw"), ("old2@example.test", "second pw")):
        imap = imaplib.IMAP4_SSL(
            "127.0.0.1", srv.port("imaps"), ssl_context=client_tls_context(), timeout=10
        )
        try:
            assert imap.login(user, pw)[0] == "OK"
            assert imap.select("Sent")[0] == "OK"  # the mailbox got the standard folders
        finally:
            imap.logout()

    # Running it again changes nothing unless --replace.
    r = srv.cli("import", "users", str(passwd))
    assert "imported 0 users" in r.stdout.decode() and "2 already present" in r.stdout.decode()


def test_in_place_dovecot_maildir_gets_special_use_roles(site, tmp_path):
    # Step 2a of docs/migrating-from-dovecot.md: the Maildir is moved in, then users imported.
    path = site.store.path_for("moved@example.test")
    for sub in ("", ".Sent", ".Trash", ".Work"):
        for d in ("cur", "new", "tmp"):
            (path / sub / d).mkdir(parents=True)
    (path / "cur" / "1600000000.M1P1.old:2,S").write_bytes(b"Subject: kept\n\nx\n")
    passwd = tmp_path / "users"
    passwd.write_text(
        f"moved@example.test:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=5000).hash('pw')}\n"
    )
    code, out, err = site.run("import", "users", str(passwd))
    assert code == 0, err
    box = site.store.mailbox("moved@example.test")
    roles = box.special_use()
    assert roles["Sent"] == "\\Sent" and roles["Trash"] == "\\Trash" and "Work" not in roles
    assert [m[3] for m in site.contents(box, "INBOX")] == [b"Subject: kept\n\nx\n"]
    assert site.accounts.verify_password("moved@example.test", "pw") == "moved@example.test"


def test_malformed_addresses_are_skipped_and_leave_nothing(site, tmp_path):
    good = sha512_crypt.using(rounds=5000).hash("pw")
    passwd = tmp_path / "users"
    passwd.write_text(
        f"a/b@example.test:{{SHA512-CRYPT}}{good}\n"
        f"..@example.test:{{SHA512-CRYPT}}{good}\n"
        f"sp ace@example.test:{{SHA512-CRYPT}}{good}\n"
    )
    mail = site.root / "data" / "mail"
    before = sorted(mail.rglob("*"))
    code, out, err = site.run("import", "users", str(passwd))
    assert code == 65, (out, err)  # nothing could be imported
    assert "3 skipped" in out and err.count("is not an address") == 3, err
    assert site.accounts.list_users() == [] and sorted(mail.rglob("*")) == before


def test_a_user_whose_maildir_cannot_be_made_is_not_created(site, tmp_path):
    site.accounts.add_domain("new.test")
    (site.root / "data" / "mail" / "new.test").write_text("in the way")
    passwd = tmp_path / "users"
    passwd.write_text(
        f"carol@new.test:{{SHA512-CRYPT}}{sha512_crypt.using(rounds=5000).hash('pw')}\n"
    )
    code, out, err = site.run("import", "users", str(passwd))
    assert code == 65 and "1 skipped" in out, (out, err)
    assert site.accounts.get_user("carol@new.test") is None
