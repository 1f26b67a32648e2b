"""Domains, users, aliases and address resolution in the SQLite account database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading

import pytest

from mailsuite.accounts.db import AccountError, Accounts, Resolution


def test_domains_add_list_delete(accounts):
    assert accounts.list_domains() == ["example.test", "other.test"]
    accounts.add_domain("New.Test.")
    assert "new.test" in accounts.list_domains()
    assert accounts.is_local_domain("NEW.test")
    with pytest.raises(AccountError, match="exists"):
        accounts.add_domain("new.test")
    accounts.del_domain("new.test")
    assert not accounts.is_local_domain("new.test")
    with pytest.raises(AccountError, match="no such domain"):
        accounts.del_domain("new.test")
    for bad in ("", "a@b", "has space.test", ".lead.test", "a/b"):
        with pytest.raises(AccountError):
            accounts.add_domain(bad)


def test_domain_with_users_cannot_be_deleted(accounts):
    accounts.add_user("a@other.test", "pw-123456")
    with pytest.raises(AccountError, match="still has users"):
        accounts.del_domain("other.test")


def test_users_add_get_list_delete_and_quota(accounts):
    user = accounts.add_user("Alice@Example.TEST", "pw-123456", 1000, 5)
    assert user.address == "alice@example.test"
    assert accounts.get_user("ALICE@example.test") == user
    accounts.add_user("bob@other.test", "pw-123456")
    assert [u.address for u in accounts.list_users()] == ["alice@example.test", "bob@other.test"]
    assert [u.address for u in accounts.list_users("other.test")] == ["bob@other.test"]
    accounts.set_quota("alice@example.test", 2000, 0)
    assert accounts.get_user("alice@example.test").quota_bytes == 2000
    with pytest.raises(AccountError, match="exists"):
        accounts.add_user("alice@example.test", "pw-123456")
    with pytest.raises(AccountError, match="not a local domain"):
        accounts.add_user("x@elsewhere.test", "pw-123456")
    with pytest.raises(AccountError, match="empty password"):
        accounts.add_user("y@example.test", "")
    with pytest.raises(AccountError):
        accounts.add_user("no-at-sign", "pw-123456")
    accounts.del_user("alice@example.test")
    assert accounts.get_user("alice@example.test") is None
    with pytest.raises(AccountError, match="no such user"):
        accounts.del_user("alice@example.test")
    with pytest.raises(AccountError, match="no such user"):
        accounts.set_quota("ghost@example.test", 1, 1)


def test_passwords_are_stored_hashed_with_argon2(accounts, tmp_path):
    accounts.add_user("alice@example.test", "Sup3r-secret")
    stored = (
        sqlite3.connect(tmp_path / "accounts.sqlite")
        .execute("SELECT password FROM users")
        .fetchone()[0]
    )
    assert stored.startswith("$argon2id$")
    assert "Sup3r-secret" not in stored
    assert accounts.verify_password("alice@example.test", "Sup3r-secret") == "alice@example.test"
    assert accounts.verify_password("ALICE@example.test", "Sup3r-secret") == "alice@example.test"
    assert accounts.verify_password("alice@example.test", "wrong") is None
    assert accounts.verify_password("ghost@example.test", "Sup3r-secret") is None
    assert accounts.verify_password("not an address", "x") is None
    accounts.set_password("alice@example.test", "Other-secret-2")
    assert accounts.verify_password("alice@example.test", "Sup3r-secret") is None
    assert accounts.verify_password("alice@example.test", "Other-secret-2") == "alice@example.test"


def test_disabled_user_cannot_log_in_nor_stay_cached(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    assert accounts.verify_password("alice@example.test", "pw-123456")
    accounts.set_enabled("alice@example.test", False)
    assert accounts.verify_password("alice@example.test", "pw-123456") is None
    assert accounts.get_user("alice@example.test").enabled is False


def test_resolve_users_plus_addressing_and_case(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    assert accounts.resolve("alice@example.test") == Resolution(("alice@example.test",), ())
    assert accounts.resolve("ALICE@Example.Test") == Resolution(("alice@example.test",), ())
    # Plus-addressing: user+tag delivers to user.
    assert accounts.resolve("alice+lists@example.test") == Resolution(("alice@example.test",), ())
    assert accounts.resolve("alice+a+b@example.test") == Resolution(("alice@example.test",), ())
    assert accounts.resolve("nobody@example.test") is None
    assert accounts.resolve("nobody+x@example.test") is None
    # Another domain: remote.
    assert accounts.resolve("someone@remote.test") == Resolution((), ("someone@remote.test",))


def test_exact_user_with_plus_wins_over_the_base_user(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_user("alice+work@example.test", "pw-123456")
    assert accounts.resolve("alice+work@example.test").local == ("alice+work@example.test",)


def test_aliases_one_to_many_local_and_remote(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_user("bob@other.test", "pw-123456")
    accounts.add_alias(
        "team@example.test", ["alice@example.test", "bob@other.test", "x@remote.test"]
    )
    res = accounts.resolve("team@example.test")
    assert set(res.local) == {"alice@example.test", "bob@other.test"}
    assert res.remote == ("x@remote.test",)
    assert accounts.resolve("team+tag@example.test") == res
    assert accounts.list_aliases() == {
        "team@example.test": ["alice@example.test", "bob@other.test", "x@remote.test"]
    }
    accounts.del_alias("team@example.test", "x@remote.test")
    assert accounts.resolve("team@example.test").remote == ()
    accounts.del_alias("team@example.test")
    assert accounts.resolve("team@example.test") is None
    with pytest.raises(AccountError, match="no such alias"):
        accounts.del_alias("team@example.test")
    with pytest.raises(AccountError, match="not a local domain"):
        accounts.add_alias("x@remote.test", ["alice@example.test"])
    with pytest.raises(AccountError):
        accounts.add_alias("y@example.test", [])


def test_alias_to_alias_and_loops_are_safe(accounts):
    """`alias add` refuses a loop; one already in the database (written by an older version or
    by hand) still resolves without running round."""
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_alias("a@example.test", ["b@example.test"])
    with pytest.raises(AccountError, match="alias loop"):
        accounts.add_alias("b@example.test", ["a@example.test", "alice@example.test"])
    with pytest.raises(AccountError, match="alias loop"):
        accounts.add_alias("self@example.test", ["self@example.test"])
    conn = sqlite3.connect(accounts.path)
    with conn:
        conn.executemany(
            "INSERT INTO aliases VALUES (?, ?)",
            [
                ("b@example.test", "a@example.test"),
                ("b@example.test", "alice@example.test"),
                ("self@example.test", "self@example.test"),
            ],
        )
    conn.close()
    assert accounts.resolve("a@example.test").local == ("alice@example.test",)
    assert accounts.resolve("self@example.test") is None


def test_user_with_alias_keeps_its_own_copy(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_user("bob@example.test", "pw-123456")
    accounts.add_alias("alice@example.test", ["bob@example.test"])
    assert set(accounts.resolve("alice@example.test").local) == {
        "alice@example.test",
        "bob@example.test",
    }


def test_catch_all_only_for_unknown_addresses(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_user("postmaster@example.test", "pw-123456")
    accounts.add_alias("@example.test", ["postmaster@example.test"])
    assert accounts.resolve("alice@example.test").local == ("alice@example.test",)
    assert accounts.resolve("anything@example.test").local == ("postmaster@example.test",)
    assert accounts.resolve("alice+tag@example.test").local == ("alice@example.test",)
    assert accounts.resolve("nobody@other.test") is None  # the catch-all is per domain
    assert accounts.list_aliases() == {"@example.test": ["postmaster@example.test"]}


def test_sender_addresses_include_aliases_but_not_catch_all(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    accounts.add_alias("sales@example.test", ["alice@example.test"])
    accounts.add_alias("@example.test", ["alice@example.test"])
    accounts.add_alias("other@example.test", ["bob@remote.test"])
    assert accounts.sender_addresses("alice@example.test") == {
        "alice@example.test",
        "sales@example.test",
    }


def test_a_second_connection_sees_changes_at_once(accounts, tmp_path):
    """The admin command (another process, another connection) and the server share the DB."""
    other = Accounts(tmp_path / "accounts.sqlite")
    accounts.add_user("alice@example.test", "pw-123456")
    assert other.resolve("alice@example.test").local == ("alice@example.test",)
    other.add_alias("al@example.test", ["alice@example.test"])
    assert accounts.resolve("al@example.test").local == ("alice@example.test",)


def test_threads_each_use_their_own_connection(accounts):
    accounts.add_user("alice@example.test", "pw-123456")
    errors = []

    def lookups():
        try:
            for _ in range(50):
                assert accounts.resolve("alice@example.test").local == ("alice@example.test",)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=lookups) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_remembered_lookups_end_when_any_connection_commits(accounts, tmp_path):
    """Lookups are cached per thread, yet a change by the admin command (another connection),
    by a plain sqlite3 client, or by this same connection is seen by the very next lookup."""
    admin = Accounts(tmp_path / "accounts.sqlite")
    bob = "bob@new.test"
    assert accounts.resolve(bob) == Resolution((), (bob,))  # not a local domain yet
    assert not accounts.is_local_domain("new.test")
    assert accounts.get_user(bob) is None

    admin.add_domain("new.test")
    assert accounts.is_local_domain("new.test")
    admin.add_user(bob, "pw-123456")
    assert accounts.resolve(bob).local == (bob,)
    assert accounts.get_user(bob).enabled

    raw = sqlite3.connect(tmp_path / "accounts.sqlite")
    with raw:
        raw.execute("UPDATE users SET enabled=0 WHERE address=?", (bob,))
    raw.close()
    assert not accounts.get_user(bob).enabled

    accounts.add_alias("team@new.test", [bob])
    assert accounts.resolve("team@new.test").local == (bob,)
    accounts.del_alias("team@new.test")
    assert accounts.resolve("team@new.test") is None


def test_commits_by_another_process_are_seen_across_wal_checkpoints(accounts, tmp_path):
    """The change check reads the WAL index header from the -shm file (no query): commits by
    another process, before and after the WAL is checkpointed and started over, end the
    remembered lookups."""
    import subprocess
    import sys

    assert accounts._commits is not None  # the database is in WAL mode: the header is watched
    db = str(tmp_path / "accounts.sqlite")

    def other_process(*statements: str) -> None:
        code = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "for s in sys.argv[2:]:\n"
            "    c.execute(s)\n"
        )
        subprocess.run([sys.executable, "-c", code, db, *statements], check=True)

    assert not accounts.is_local_domain("one.test")
    other_process("INSERT INTO domains VALUES ('one.test')")
    assert accounts.is_local_domain("one.test")
    other_process("PRAGMA wal_checkpoint(TRUNCATE)")
    other_process(
        "INSERT INTO domains VALUES ('two.test')", "DELETE FROM domains WHERE name='one.test'"
    )
    assert accounts.is_local_domain("two.test")
    assert not accounts.is_local_domain("one.test")
    other_process("BEGIN IMMEDIATE", "DELETE FROM domains WHERE name='two.test'", "ROLLBACK")
    assert accounts.is_local_domain("two.test")


def test_route_tells_local_domain_and_resolution_and_follows_changes(accounts, tmp_path):
    assert accounts.route("x@remote.test") == (False, None)
    assert accounts.route("nobody@example.test") == (True, None)
    accounts.add_user("alice@example.test", "pw-123456")
    assert accounts.route("Alice+news@Example.TEST") == (
        True,
        Resolution(("alice@example.test",), ()),
    )
    Accounts(tmp_path / "accounts.sqlite").add_domain("remote.test")
    assert accounts.route("x@remote.test") == (True, None)


def test_sender_addresses_follow_alias_changes_from_another_connection(accounts, tmp_path):
    accounts.add_user("alice@example.test", "pw-123456")
    assert accounts.sender_addresses("alice@example.test") == {"alice@example.test"}
    Accounts(tmp_path / "accounts.sqlite").add_alias("boss@example.test", ["alice@example.test"])
    assert accounts.sender_addresses("alice@example.test") == {
        "alice@example.test",
        "boss@example.test",
    }


def test_concurrent_writers_wait_for_each_other_instead_of_failing(accounts, tmp_path):
    """Threads and the admin command writing at once: each write transaction takes the lock
    up front and waits, so none fails with "database is locked" (a deferred BEGIN that read
    before another connection committed could not write any more)."""
    errors = []

    def add(n):
        try:
            conn = Accounts(tmp_path / "accounts.sqlite") if n % 2 else accounts
            for i in range(30):
                conn.add_domain(f"d{n}-{i}.test")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(accounts.list_domains()) == 2 + 8 * 30


SERVER_SIDE = """
import sqlite3, subprocess, sys, time
from pathlib import Path
from mailsuite.accounts.db import Accounts

path = Path(sys.argv[1])
accounts = Accounts(path, ["example.test"])
accounts.add_user("alice@example.test", "pw-123456")
# The server is writing (another connection of its own holds the write lock) ...
writer = sqlite3.connect(path, isolation_level=None)
writer.execute("BEGIN IMMEDIATE")
# ... when another process (the admin command) opens the database and waits for the lock ...
admin = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(path)])
time.sleep(1)
# ... and the server looks a user up meanwhile.
assert accounts.get_user("alice@example.test") is not None
writer.execute("ROLLBACK")
assert admin.wait() == 0
assert accounts.get_user("bob@example.test") is not None
print("ok")
"""

ADMIN_SIDE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
conn.execute("INSERT INTO users (address, password) VALUES ('bob@example.test', 'x')")
conn.close()
"""


def test_another_process_opening_the_database_never_pulls_the_wal_index_away(tmp_path):
    """The lookup cache watches the WAL index (-shm) through a mapping. The process keeps
    SQLite's lock on that file while it does (closing any descriptor of the file would drop
    it), so an admin command opening the database never takes the file for unused and
    truncates it under the mapping: the server was killed by SIGBUS, its other connections
    got "locking protocol" errors."""
    result = subprocess.run(
        [sys.executable, "-c", SERVER_SIDE, str(tmp_path / "accounts.sqlite"), ADMIN_SIDE],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, (result.returncode, result.stderr.decode()[-2000:])
    assert result.stdout == b"ok\n"
