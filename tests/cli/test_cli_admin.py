"""The `mailsuite` admin command, run as a real subprocess, also while the server runs: every
error is one line on stderr with a non-zero exit and never a traceback; passwords never echo."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from tests.conftest import run_cli


def one_error_line(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.decode()
    assert result.returncode != 0, result
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mailsuite: ")
    return err.strip()


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_init_writes_config_data_and_certificate_then_check_lists_listeners(tmp_path):
    target = tmp_path / "site"
    out = ok(run_cli("init", str(target), "--hostname", "mx.site.test", "--domain", "site.test"))
    conf = target / "mailsuite.toml"
    assert str(conf) in out and "user add postmaster@site.test" in out
    assert (target / "data" / "mail").is_dir() and (target / "data" / "accounts.sqlite").exists()
    key = target / "certs" / "mail.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (target / "certs" / "mail.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    checked = ok(run_cli("--config", str(conf), "check"))
    assert "ok" in checked and "mx.site.test" in checked
    assert "listen imaps" in checked and "(implicit TLS)" in checked
    # Once is enough: init never overwrites a config.
    err = one_error_line(run_cli("init", str(target)))
    assert "exists" in err
    # And the config can also come from $MAILSUITE_CONFIG.
    listed = ok(run_cli("domain", "list", env={"MAILSUITE_CONFIG": str(conf)}))
    assert listed.split() == ["site.test"]


def test_accounts_managed_while_the_server_runs(mail_server):
    srv = mail_server
    ok(srv.cli("domain", "add", "new.test"))
    assert ok(srv.cli("domain", "list")).split() == ["example.test", "new.test"]
    added = srv.cli("user", "add", "Bob@New.Test", "--password-stdin", input=b"Secret-99-Zebra\n")
    out = ok(added)
    assert "bob@new.test" in out
    assert b"Secret-99-Zebra" not in added.stdout + added.stderr
    # The running server sees the new user at once: login and delivery.
    authn = srv.services.authenticator
    assert srv.call(authn.login, "bob@new.test", "Secret-99-Zebra", "127.0.0.1", "imap") == (
        "bob@new.test"
    )
    assert srv.services.delivery.resolve("bob@new.test").kind == "local"
    assert (srv.services.store.path_for("bob@new.test") / "cur").is_dir()
    listed = ok(srv.cli("user", "list"))
    assert "alice@example.test" in listed and "bob@new.test" in listed
    assert ok(srv.cli("user", "list", "new.test")).split() == ["bob@new.test"]

    changed = srv.cli(
        "user", "passwd", "bob@new.test", "--password-stdin", input=b"Other-99-Quartz\n"
    )
    ok(changed)
    assert b"Other-99-Quartz" not in changed.stdout + changed.stderr
    from mailsuite.accounts.checker import AuthFailed

    with pytest.raises(AuthFailed):
        srv.call(authn.login, "bob@new.test", "Secret-99-Zebra", "127.0.0.1", "imap")
    assert srv.call(authn.login, "bob@new.test", "Other-99-Quartz", "127.0.0.2", "imap")

    ok(srv.cli("alias", "add", "team@new.test", "bob@new.test", "alice@example.test"))
    ok(srv.cli("alias", "add", "@new.test", "bob@new.test"))
    aliases = ok(srv.cli("alias", "list"))
    assert "team@new.test -> alice@example.test, bob@new.test" in aliases
    assert "@new.test -> bob@new.test" in aliases
    assert set(srv.services.delivery.resolve("team@new.test").local) == {
        "bob@new.test",
        "alice@example.test",
    }
    assert srv.services.delivery.resolve("anyone@new.test").local == ("bob@new.test",)
    ok(srv.cli("alias", "del", "@new.test"))
    assert srv.services.delivery.resolve("anyone@new.test").kind == "unknown"

    quota = ok(srv.cli("user", "quota", "bob@new.test", "--bytes", "2M", "--messages", "100"))
    assert "limit 2097152 bytes, 100 messages" in quota
    assert srv.services.accounts.get_user("bob@new.test").quota_bytes == 2097152

    one_error_line(srv.cli("domain", "del", "new.test"))  # still has users
    ok(srv.cli("user", "del", "bob@new.test", "--purge"))
    assert not srv.services.store.path_for("bob@new.test").exists()
    ok(srv.cli("alias", "del", "team@new.test"))
    ok(srv.cli("domain", "del", "new.test"))
    assert srv.services.delivery.resolve("bob@new.test").kind == "remote"


def test_user_del_keeps_mail_unless_purged(mail_server):
    path = mail_server.services.store.path_for("alice@example.test")
    out = ok(mail_server.cli("user", "del", "alice@example.test"))
    assert "mail kept" in out
    assert (path / "cur").is_dir()


@pytest.mark.parametrize(
    "args, stdin, expected",
    [
        (
            ("user", "add", "x@nowhere.test", "--password-stdin"),
            b"pw-1234567890\n",
            "not a local domain",
        ),
        (("user", "add", "alice@example.test", "--password-stdin"), b"pw-1234567890\n", "exists"),
        (("user", "add", "y@example.test", "--password-stdin"), b"\n", "empty password"),
        (("user", "add", "y@example.test"), b"", "--password-stdin"),
        (
            ("user", "add", "not-an-address", "--password-stdin"),
            b"pw-1234567890\n",
            "not an address",
        ),
        (("user", "del", "ghost@example.test"), None, "no such user"),
        (("user", "passwd", "ghost@example.test", "--password-stdin"), b"pw\n", "no such user"),
        (("user", "quota", "ghost@example.test"), None, "no such user"),
        (("domain", "del", "ghost.test"), None, "no such domain"),
        (("domain", "add", "example.test"), None, "exists"),
        (("domain", "add", "bad domain"), None, "not a domain"),
        (("alias", "add", "x@remote.test", "alice@example.test"), None, "not a local domain"),
        (("alias", "del", "ghost@example.test"), None, "no such alias"),
        (("deliver", "--to", "alice@example.test"), b"", "empty message"),
    ],
)
def test_every_error_is_one_line_and_a_nonzero_exit(mail_server, args, stdin, expected):
    result = mail_server.cli(*args, input=stdin if stdin is not None else b"")
    line = one_error_line(result)
    assert expected in line
    assert b"pw-1234567890" not in result.stdout + result.stderr


def test_usage_errors_are_one_line_too(tmp_path):
    for args in (("frobnicate",), ("user",), ("user", "add"), ("deliver",)):
        result = run_cli("--config", str(tmp_path / "none.toml"), *args)
        line = one_error_line(result)
        assert "usage" not in line.lower() or len(line) < 300


def test_missing_config_file_is_one_line_exit_78(tmp_path):
    result = run_cli("--config", str(tmp_path / "missing.toml"), "domain", "list")
    assert result.returncode == 78  # EX_CONFIG
    assert "missing.toml" in one_error_line(result)


def test_deliver_exit_codes(mail_server):
    srv = mail_server
    msg = b"From: a@example.net\r\nSubject: via cli\r\n\r\nbody\r\n"
    ok(srv.cli("deliver", "--to", "alice@example.test", "--from", "a@example.net", input=msg))
    files = srv.message_files("alice@example.test")
    assert len(files) == 1
    data = files[0].read_bytes()
    assert data.startswith(b"Return-Path: <a@example.net>\nDelivered-To: alice@example.test\n")
    assert data.endswith(b"Subject: via cli\n\nbody\n")
    # The running server's shared folder picks it up on its next refresh.
    folder = srv.call(lambda: srv.services.store.mailbox("alice@example.test").folder("INBOX"))
    srv.call(folder.refresh)
    assert len(folder.messages) == 1

    # EX_NOUSER (67): nobody by that name; nothing delivered.
    result = srv.cli("deliver", "--to", "ghost@example.test", input=msg)
    assert result.returncode == 67
    assert "no such user" in one_error_line(result)

    # EX_TEMPFAIL (75): over quota (the mailbox may have room later).
    srv.add_user("full@example.test", quota_messages=1)
    ok(srv.cli("deliver", "--to", "full@example.test", input=msg))
    result = srv.cli("deliver", "--to", "full@example.test", input=msg)
    assert result.returncode == 75
    assert "quota" in one_error_line(result)
    assert len(srv.message_files("full@example.test")) == 1
    # EX_NOPERM (77): larger than the whole quota, it will never fit.
    srv.add_user("tiny@example.test", quota_bytes=60)
    result = srv.cli("deliver", "--to", "tiny@example.test", input=msg)
    assert result.returncode == 77
    assert "quota" in one_error_line(result)
    assert srv.message_files("tiny@example.test") == []

    # EX_TEMPFAIL (75): the store cannot write right now (tmp/ is not a directory).
    srv.add_user("broken@example.test")
    tmp = srv.services.store.path_for("broken@example.test") / "tmp"
    os.rmdir(tmp)
    tmp.write_bytes(b"")
    result = srv.cli("deliver", "--to", "broken@example.test", input=msg)
    assert result.returncode == 75
    one_error_line(result)
    # Two recipients, one unknown: refused before anything is stored.
    result = srv.cli(
        "deliver", "--to", "alice@example.test", "--to", "ghost@example.test", input=msg
    )
    assert result.returncode == 67
    assert len(srv.message_files("alice@example.test")) == 1
