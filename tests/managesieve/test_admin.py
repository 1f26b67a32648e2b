"""`mailsuite sieve ...` as a real subprocess against the store ManageSieve serves, also while
the server runs: what the admin stores a ManageSieve client sees, and errors are one line in
words with their sysexits code."""

from __future__ import annotations

import subprocess

from tests.managesieve.conftest import logged_in

SORT = 'require "fileinto";\nif header :contains "list-id" "lists" { fileinto "Lists"; }\n'


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def error(result: subprocess.CompletedProcess, code: int) -> str:
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("mailsuite: sieve: ")
    return err.strip()


def test_put_list_get_activate_deactivate_delete(sieve_server, tmp_path, alice):
    srv = sieve_server
    script = tmp_path / "sort.sieve"
    script.write_text(SORT)
    assert "stored" in ok(srv.cli("sieve", "put", alice, "sort", str(script)))
    assert "stored" in ok(srv.cli("sieve", "put", alice, "other", input=b"keep;\n"))
    assert ok(srv.cli("sieve", "list", alice)) == "other\nsort\n"
    assert ok(srv.cli("sieve", "get", alice, "sort")) == SORT
    assert "active" in ok(srv.cli("sieve", "activate", alice, "sort"))
    assert ok(srv.cli("sieve", "list", alice)) == "other\nsort\tactive\n"
    assert "renamed" in ok(srv.cli("sieve", "rename", alice, "sort", "lists"))
    assert ok(srv.cli("sieve", "list", alice)) == "lists\tactive\nother\n"
    err = error(srv.cli("sieve", "delete", alice, "lists"), 64)
    assert "deactivate it first" in err
    assert "no script" in ok(srv.cli("sieve", "deactivate", alice))
    assert "deleted" in ok(srv.cli("sieve", "delete", alice, "lists"))
    assert ok(srv.cli("sieve", "list", alice)) == "other\n"


def test_what_the_admin_stores_a_managesieve_client_sees(sieve_server, raw, alice):
    ok(sieve_server.cli("sieve", "put", "--activate", alice, "sort", input=SORT.encode()))
    c = logged_in(raw, alice)
    assert c.command(b"LISTSCRIPTS") == [b'"sort" ACTIVE', b'OK "Listscripts completed."']
    assert c.final(b'PUTSCRIPT "mine" {5+}\r\nkeep;').startswith(b"OK")
    assert ok(sieve_server.cli("sieve", "get", alice, "mine")) == "keep;\n"


def test_a_bad_script_is_refused_with_its_line(sieve_server, tmp_path, alice):
    bad = tmp_path / "bad.sieve"
    bad.write_text('require "fileinto";\n\nfileinto;\n')
    err = error(sieve_server.cli("sieve", "put", alice, "bad", str(bad)), 65)
    assert err.startswith("mailsuite: sieve: bad: line 3: ")
    err = error(sieve_server.cli("sieve", "check", alice, str(bad)), 65)
    assert f"{bad}: line 3: " in err
    assert "valid" in ok(sieve_server.cli("sieve", "check", alice, input=b"keep;\n"))
    assert ok(sieve_server.cli("sieve", "list", alice)) == ""


def test_unknown_user_and_missing_things(sieve_server, tmp_path, alice):
    srv = sieve_server
    assert "no such user" in error(srv.cli("sieve", "list", "nobody@example.test"), 67)
    assert "has no script" in error(srv.cli("sieve", "get", alice, "none"), 66)
    assert "has no script" in error(srv.cli("sieve", "activate", alice, "none"), 66)
    missing = tmp_path / "missing.sieve"
    assert "missing.sieve" in error(srv.cli("sieve", "put", alice, "x", str(missing)), 66)
    assert "not UTF-8" in error(srv.cli("sieve", "put", alice, "x", input=b"\xff\n"), 65)
    assert "control character" in error(srv.cli("sieve", "put", alice, "a\tb", input=b"keep;"), 64)


def test_script_size_quota(sieve_server, alice):
    big = b"# " + b"x" * 70_000 + b"\nkeep;\n"
    assert "larger than" in error(sieve_server.cli("sieve", "put", alice, "big", input=big), 73)
