"""Bad input to the admin command gets a clear refusal, its sysexits status, and leaves the
database and the disk as they were. Every test runs the real command in a subprocess against a
real server's data."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
import termios
import time

import pytest

from tests.cli.test_cli_admin import ok, one_error_line
from tests.conftest import REPO, run_cli

GOOD_PASSWORD = b"correct-horse-battery\n"


def tree(path) -> list:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def db_rows(srv) -> tuple:
    with sqlite3.connect(srv.config.accounts_db) as conn:
        return tuple(
            tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
            for t in ("domains", "users", "aliases")
        )


@pytest.mark.parametrize(
    "address",
    [
        "a b@example.test",
        "x@@example.test",
        "a\tb@example.test",
        "a\x01b@example.test",
        "a/b@example.test",
        "..@example.test",
        ".@example.test",
        "a..b@example.test",
        "a@exa mple.test",
    ],
)
def test_user_add_refuses_a_malformed_address_before_writing_anything(mail_server, address):
    srv = mail_server
    mail_before, db_before = tree(srv.config.mail_dir), db_rows(srv)
    result = srv.cli("user", "add", address, "--password-stdin", input=GOOD_PASSWORD)
    assert result.returncode == 65, result  # EX_DATAERR
    assert "is not an address" in one_error_line(result)
    assert tree(srv.config.mail_dir) == mail_before and db_rows(srv) == db_before
    # The alias and domain commands use the same check.
    result = srv.cli("alias", "add", address, "alice@example.test")
    assert result.returncode == 65 and "is not an address" in one_error_line(result)
    result = srv.cli("alias", "add", "team@example.test", address)
    assert result.returncode == 65 and "is not an address" in one_error_line(result)
    assert db_rows(srv) == db_before


def test_domains_are_stored_as_a_labels(mail_server):
    srv = mail_server
    assert "xn--bcher-kva.test added" in ok(srv.cli("domain", "add", "B\u00fccher.test"))
    out = ok(
        srv.cli("user", "add", "info@b\u00fccher.test", "--password-stdin", input=GOOD_PASSWORD)
    )
    assert "info@xn--bcher-kva.test added" in out
    assert (srv.config.mail_dir / "xn--bcher-kva.test" / "info" / "cur").is_dir()
    result = srv.cli("domain", "add", "bad domain")
    assert result.returncode == 65 and "not a domain name" in one_error_line(result)
    result = srv.cli("domain", "add", "xn--bcher-kva.test")
    assert result.returncode == 73 and "exists" in one_error_line(result)  # EX_CANTCREAT


def test_user_add_leaves_nothing_when_the_maildir_cannot_be_made(mail_server):
    srv = mail_server
    ok(srv.cli("domain", "add", "new.test"))
    # A file where the domain's folder of Maildirs would go: the Maildir cannot be made.
    blocker = srv.config.mail_dir / "new.test"
    blocker.write_text("in the way")
    mail_before, db_before = tree(srv.config.mail_dir), db_rows(srv)
    result = srv.cli("user", "add", "carol@new.test", "--password-stdin", input=GOOD_PASSWORD)
    assert result.returncode == 73, result  # EX_CANTCREAT
    assert "cannot create the mailbox of carol@new.test" in one_error_line(result)
    assert db_rows(srv) == db_before and tree(srv.config.mail_dir) == mail_before
    assert srv.services.accounts.get_user("carol@new.test") is None
    # Once the way is clear, the same command works.
    blocker.unlink()
    ok(srv.cli("user", "add", "carol@new.test", "--password-stdin", input=GOOD_PASSWORD))
    assert (srv.config.mail_dir / "new.test" / "carol" / "cur").is_dir()


def test_user_del_purge_is_all_or_nothing(mail_server):
    srv = mail_server
    srv.add_user("dan@example.test")
    maildir = srv.services.store.path_for("dan@example.test")
    (maildir / "new" / "1.msg").write_bytes(b"Subject: keep me\n\nx\n")
    # The account database is locked by another writer for longer than the command waits:
    # the deletion fails and the Maildir, set aside inside the transaction, comes back.
    holder = sqlite3.connect(srv.config.accounts_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = srv.cli("user", "del", "dan@example.test", "--purge")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 75  # EX_TEMPFAIL: nothing changed, try again
    assert "account database is busy" in one_error_line(result)
    assert (maildir / "new" / "1.msg").read_bytes() == b"Subject: keep me\n\nx\n"
    assert srv.services.accounts.get_user("dan@example.test") is not None
    assert not [p for p in maildir.parent.iterdir() if p.name.startswith(".deleting")]
    out = ok(srv.cli("user", "del", "dan@example.test", "--purge"))
    assert "with its mail" in out
    assert not maildir.exists() and srv.services.accounts.get_user("dan@example.test") is None
    assert not [p for p in maildir.parent.iterdir() if p.name.startswith(".deleting")]


@pytest.mark.parametrize(
    "password, why",
    [
        (b"short-pw\n", "too short"),
        (b"\n", "empty password"),
        (b"erin-is-my-name\n", "contain the user's name"),
        (b"ERIN\n", "too short"),
    ],
)
def test_password_policy_for_user_add_and_passwd(mail_server, password, why):
    srv = mail_server
    result = srv.cli("user", "add", "erin@example.test", "--password-stdin", input=password)
    assert result.returncode == 65, result
    assert why in one_error_line(result)
    assert password.strip() not in result.stdout + result.stderr or not password.strip()
    assert srv.services.accounts.get_user("erin@example.test") is None
    assert not srv.services.store.path_for("erin@example.test").exists()
    result = srv.cli(
        "user",
        "passwd",
        "alice@example.test",
        "--password-stdin",
        input=password.replace(b"erin", b"alice").replace(b"ERIN", b"ALIC"),
    )
    assert result.returncode == 65 and why in one_error_line(result)


def test_password_equal_to_the_local_part_is_refused(mail_server):
    result = mail_server.cli(
        "user", "add", "longername@example.test", "--password-stdin", input=b"LongerName\n"
    )
    assert result.returncode == 65
    assert "may not be or contain the user's name" in one_error_line(result)


def test_min_password_length_is_configurable(server_factory):
    srv = server_factory(accounts={"min_password_length": 30})
    result = srv.cli("user", "add", "fay@example.test", "--password-stdin", input=GOOD_PASSWORD)
    assert result.returncode == 65 and "at least 30" in one_error_line(result)


def run_with_terminal(args: list[str], typed: bytes) -> tuple[int, bytes]:
    """The admin command with a pseudo-terminal as its controlling terminal (getpass reads
    from there), `typed` entered at the prompts; (exit status, everything it printed)."""
    master, slave = os.openpty()

    def take_terminal():
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        preexec_fn=take_terminal,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    for line in typed.split(b"\n")[:-1]:
        while b"Password:" not in output and b"Again:" not in output:
            output += os.read(master, 1024)
            assert time.monotonic() < deadline, output
        os.write(master, line + b"\n")
        output = output.replace(b"Password:", b"").replace(b"Again:", b"")
    collected = b""
    while True:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        if not chunk:
            break
        collected += chunk
    os.close(master)
    return proc.wait(timeout=60), output + collected


def test_the_prompt_gives_the_same_refusal_as_password_stdin(mail_server):
    conf = str(mail_server.config_path)
    code, printed = run_with_terminal(
        ["--config", conf, "user", "add", "gus@example.test"], b"short-pw\n"
    )
    assert code == 65, printed
    from_stdin = mail_server.cli(
        "user", "add", "gus@example.test", "--password-stdin", input=b"short-pw\n"
    )
    assert one_error_line(from_stdin).encode() in printed
    assert mail_server.services.accounts.get_user("gus@example.test") is None


def test_negative_quotas_are_usage_errors(mail_server):
    for args in (
        ("user", "quota", "alice@example.test", "--messages", "-5"),
        ("user", "quota", "alice@example.test", "--bytes", "-5"),
        ("user", "add", "hal@example.test", "--quota-messages", "-1", "--password-stdin"),
    ):
        result = mail_server.cli(*args, input=GOOD_PASSWORD)
        assert result.returncode == 64, (args, result)  # EX_USAGE
        one_error_line(result)
    assert mail_server.services.accounts.get_user("alice@example.test").quota_messages == 0


def test_alias_del_of_one_target_and_its_errors(mail_server):
    srv = mail_server
    ok(srv.cli("alias", "add", "team@example.test", "alice@example.test", "x@remote.test"))
    out = ok(srv.cli("alias", "del", "team@example.test", "x@remote.test"))
    assert "alias team@example.test: target x@remote.test removed" in out
    assert ok(srv.cli("alias", "list")).strip() == "team@example.test -> alice@example.test"
    result = srv.cli("alias", "del", "team@example.test", "y@remote.test")
    assert result.returncode == 67
    assert "alias team@example.test has no target y@remote.test" in one_error_line(result)
    result = srv.cli("alias", "del", "ghost@example.test", "y@remote.test")
    assert result.returncode == 67 and "no such alias ghost@example.test" in one_error_line(result)


def test_alias_loops_are_refused(mail_server):
    srv = mail_server
    ok(srv.cli("alias", "add", "a@example.test", "b@example.test"))
    result = srv.cli("alias", "add", "b@example.test", "a@example.test")
    assert result.returncode == 65
    assert "alias loop: b@example.test -> a@example.test -> b@example.test" in one_error_line(
        result
    )
    assert srv.services.accounts.list_aliases() == {"a@example.test": ["b@example.test"]}


def test_dns_refuses_a_bad_domain_and_warns_about_a_foreign_one(mail_server):
    result = mail_server.cli("dns", "bad domain")
    assert result.returncode == 65 and result.stdout == b""
    assert "not a domain name" in one_error_line(result)
    result = mail_server.cli("dns", "other.test")
    assert result.returncode == 0 and b"IN MX" in result.stdout
    assert b"warning: other.test is not a local domain" in result.stderr
    result = mail_server.cli("dns", "example.test")
    assert result.returncode == 0 and result.stderr == b""


def test_deliver_into_a_missing_folder_is_refused(mail_server):
    srv = mail_server
    msg = b"Subject: filed\r\n\r\nbody\r\n"
    result = srv.cli("deliver", "--to", "alice@example.test", "--folder", "NoSuchFolder", input=msg)
    assert result.returncode == 73  # EX_CANTCREAT
    assert "has no folder 'NoSuchFolder'" in one_error_line(result)
    result = srv.cli("deliver", "--to", "alice@example.test", "--folder", "../x", input=msg)
    assert result.returncode == 65
    one_error_line(result)
    assert srv.message_files("alice@example.test") == []
    ok(srv.cli("deliver", "--to", "alice@example.test", "--folder", "Sent", input=msg))
    assert len(srv.message_files("alice@example.test", "Sent")) == 1


def test_user_list_of_an_unknown_domain(mail_server):
    result = mail_server.cli("user", "list", "nosuch.test")
    assert result.returncode == 67
    assert "nosuch.test is not a local domain" in one_error_line(result)


def test_queue_flush_without_a_server_says_so(tmp_path):
    conf = tmp_path / "mailsuite.toml"
    conf.write_text(
        f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
        "[relay]\nscan_interval = 0.1\n"
    )
    result = run_cli("--config", str(conf), "queue", "flush")
    assert result.returncode == 69  # EX_UNAVAILABLE
    line = one_error_line(result)
    assert "the server is not running" in line and "marked due now" in line
    assert "scheduled" not in line and result.stdout == b""


def test_a_closed_output_ends_the_command_quietly(mail_server):
    for args in (("check",), ("user", "list"), ("queue", "list"), ("user", "list", "--help")):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first line is written
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "mailsuite.cli",
                    "--config",
                    str(mail_server.config_path),
                    *args,
                ],
                stdout=write_end,
                stderr=subprocess.PIPE,
                timeout=60,
            )
        finally:
            os.close(write_end)
        assert result.stderr == b"", (args, result.stderr)
        # argparse ends --help with status 0 whatever became of its output.
        assert result.returncode == (0 if "--help" in args else 141), args


def test_closed_output_through_a_shell_pipe(mail_server):
    result = subprocess.run(
        f"{sys.executable} -m mailsuite.cli --config {mail_server.config_path} check | head -1",
        shell=True,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stderr == b""
    assert len(result.stdout.splitlines()) == 1


def test_usage_and_config_errors_have_their_sysexits_status(tmp_path):
    for args in (("frobnicate",), ("user",), ("user", "add"), ("deliver",)):
        result = run_cli("--config", str(tmp_path / "none.toml"), *args)
        assert result.returncode == 64, args  # EX_USAGE, argparse's own errors too
    result = run_cli("--config", str(tmp_path / "none.toml"), "domain", "list")
    assert result.returncode == 78  # EX_CONFIG
    bad = tmp_path / "bad.toml"
    bad.write_text("[accounts]\nmin_password_length = 0\n")
    result = run_cli("--config", str(bad), "domain", "list")
    assert result.returncode == 78 and "accounts.min_password_length" in one_error_line(result)


@pytest.mark.parametrize(
    "args, stdin, status",
    [
        (("user", "add", "x@nowhere.test", "--password-stdin"), GOOD_PASSWORD, 67),
        (("user", "add", "alice@example.test", "--password-stdin"), GOOD_PASSWORD, 73),
        (("user", "add", "y@example.test", "--password-stdin"), b"\n", 65),
        (("user", "add", "y@example.test"), b"", 64),
        (("user", "add", "not-an-address", "--password-stdin"), GOOD_PASSWORD, 65),
        (("user", "del", "ghost@example.test"), b"", 67),
        (("user", "passwd", "ghost@example.test", "--password-stdin"), GOOD_PASSWORD, 67),
        (("user", "quota", "ghost@example.test"), b"", 67),
        (("domain", "del", "ghost.test"), b"", 67),
        (("domain", "add", "example.test"), b"", 73),
        (("alias", "add", "x@remote.test", "alice@example.test"), b"", 67),
        (("alias", "del", "ghost@example.test"), b"", 67),
        (("deliver", "--to", "alice@example.test"), b"", 65),
        (("queue", "show", "NOSUCH1"), b"", 67),
        (("export", "--user", "ghost@example.test", "--to", "/nonexistent"), b"", 67),
        (("import", "mbox", "/nonexistent.mbox", "--user", "alice@example.test"), b"", 66),
    ],
)
def test_each_refusal_has_its_sysexits_status(mail_server, args, stdin, status):
    result = mail_server.cli(*args, input=stdin)
    assert result.returncode == status, result
    one_error_line(result)


def test_init_over_an_existing_config_is_cant_create(tmp_path):
    ok(run_cli("init", str(tmp_path / "site")))
    result = run_cli("init", str(tmp_path / "site"))
    assert result.returncode == 73 and "exists" in one_error_line(result)
