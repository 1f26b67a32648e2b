"""ScriptStore: an account's scripts on disk (RFC 5804's model: named scripts, one active)."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from mailsuite.sieve import SieveError, scripts
from mailsuite.sieve.scripts import (
    ActiveScriptError,
    BadNameError,
    ParsedScripts,
    QuotaError,
    ScriptStore,
    account_folder,
    forget_stamps,
    index_stamp,
)


@pytest.fixture
def store(tmp_path):
    return ScriptStore(account_folder(tmp_path / "maildir"), max_scripts=3, max_size=200)


def test_put_get_list_activate(store):
    assert store.names() == [] and store.active_name() is None and store.active() is None
    store.put("b", "keep;")
    store.put("a", "discard;")
    assert store.names() == ["a", "b"]
    assert store.get("a") == "discard;"
    store.activate("a")
    assert store.active_name() == "a"
    assert store.active().commands[0].name == "discard"
    store.activate(None)
    assert store.active() is None


def test_put_checks_the_script_first(store):
    with pytest.raises(SieveError) as e:
        store.put("bad", 'keep;\nfileinto "x";')
    assert e.value.line == 2
    assert store.names() == []


def test_quotas_rfc5804_maxscripts_and_maxsize(store):
    for name in "abc":
        store.put(name, "keep;")
    with pytest.raises(QuotaError) as e:
        store.put("d", "keep;")
    assert e.value.code == "MAXSCRIPTS"
    store.put("a", "discard;")  # replacing does not count as one more
    with pytest.raises(QuotaError) as e:
        store.put("a", "#" * 300)
    assert e.value.code == "MAXSIZE"
    assert not store.has_space("d", 10)
    assert store.has_space("a", 200) and not store.has_space("a", 201)


def test_delete_refuses_the_active_script_rfc5804_2_10(store):
    store.put("a", "keep;")
    store.activate("a")
    with pytest.raises(ActiveScriptError):
        store.delete("a")
    store.activate(None)
    store.delete("a")
    assert store.names() == []
    with pytest.raises(KeyError):
        store.delete("a")
    with pytest.raises(KeyError):
        store.get("a")


def test_rename_keeps_the_active_mark(store):
    store.put("a", "keep;")
    store.put("b", "keep;")
    store.activate("a")
    with pytest.raises(FileExistsError):
        store.rename("a", "b")
    store.rename("a", "c")
    assert store.names() == ["b", "c"] and store.active_name() == "c"
    with pytest.raises(KeyError):
        store.rename("zz", "y")
    with pytest.raises(KeyError):
        store.activate("zz")


@pytest.mark.parametrize("name", ["", "a\x00b", "tab\there", "del\x7f", "c1\x85", "x" * 1025])
def test_names_rfc5804_1_6(store, name):
    with pytest.raises(BadNameError):
        store.put(name, "keep;")


def test_any_other_name_works_even_slashes_and_unicode(store):
    for name in ("../../etc/passwd", ".hidden", "vacation \u00e9t\u00e9", "x" * 1024):
        store.put(name, "keep;")
        assert store.get(name) == "keep;"
        store.delete(name)
    assert sorted(os.listdir(store.folder)) == ["index.json", "lock"]


def test_files_are_private(store):
    store.put("a", "keep;")
    assert stat.S_IMODE(os.stat(store.folder).st_mode) == 0o700
    for entry in os.scandir(store.folder):
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600, entry.name


def test_active_is_cached_until_a_change(store):
    store.put("a", 'require "include";\ninclude "b";')
    store.put("b", "keep;")
    store.activate("a")
    first = store.active()
    assert store.active() is first
    store.put("b", "discard;")  # an included script changed
    second = store.active()
    assert second is not first
    assert second.included[("personal", "b")].commands[0].name == "discard"


def test_accounts_with_the_same_script_share_one_parse(tmp_path):
    """Eight accounts with the same script, their first deliveries at once: one parse between
    them (the same commands), each with its own name; a script that includes another is
    each account's own, since the include resolves in that account."""
    parsed = ParsedScripts()
    text = 'require "fileinto";\nif header :is "list-id" "x" { fileinto "Lists"; }\n'
    stores = []
    for i in range(8):
        store = ScriptStore(tmp_path / f"u{i}" / "sieve", parsed=parsed)
        store.put(f"rules{i}", text)
        store.activate(f"rules{i}")
        stores.append(store)
    got: list = [None] * len(stores)
    start = threading.Barrier(len(stores))

    def first_delivery(i: int) -> None:
        start.wait()
        got[i] = stores[i].active()

    threads = [threading.Thread(target=first_delivery, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(script.commands is got[0].commands for script in got)
    assert [script.name for script in got] == [f"rules{i}" for i in range(8)]
    # A changed script is parsed anew; the other accounts keep theirs.
    stores[0].put("rules0", "discard;")
    assert stores[0].active().commands[0].name == "discard"
    assert stores[1].active() is got[1]

    including = 'require "include";\ninclude "part";\n'
    for store, action in ((stores[2], "keep;"), (stores[3], "discard;")):
        store.put("part", action)
        store.put("main", including)
        store.activate("main")
    two, three = stores[2].active(), stores[3].active()
    assert two.included[("personal", "part")].commands[0].name == "keep"
    assert three.included[("personal", "part")].commands[0].name == "discard"


def test_global_includes_are_read_from_the_global_folder(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "spam.sieve").write_text("discard;")
    store = ScriptStore(tmp_path / "s", global_folder=tmp_path / "g")
    store.put("main", 'require "include";\ninclude :global "spam";')
    store.activate("main")
    assert store.active().included[("global", "spam")].commands[0].name == "discard"
    (tmp_path / "g" / "spam.sieve").write_text("keep;")
    os.utime(tmp_path / "g" / "spam.sieve", (1, 1))
    assert store.active().included[("global", "spam")].commands[0].name == "keep"


def test_status_is_recorded_and_cleared(store):
    assert store.status() is None
    store.set_status("main", "line 3: folder 'x' does not exist")
    assert store.status()["error"] == "line 3: folder 'x' does not exist"
    store.set_status("main", None)
    assert store.status() is None


def test_a_new_active_script_clears_the_old_error(store):
    store.put("a", "keep;")
    store.activate("a")
    store.set_status("a", "line 1: broken")
    store.put("b", "keep;")
    assert store.status() is not None  # another script: the active one's error stays
    store.put("a", "discard;")
    assert store.status() is None
    store.set_status("a", "line 1: broken")
    store.activate("b")
    assert store.status() is None


def test_two_writers_never_lose_each_others_scripts(tmp_path):
    folder = tmp_path / "s"
    stores = [ScriptStore(folder, max_scripts=100) for _ in range(2)]

    def work(i):
        for n in range(20):
            stores[i].put(f"w{i}-{n}", "keep;")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(stores[0].names()) == 40
    assert len([f for f in os.listdir(folder) if f.endswith(".sieve")]) == 40


def test_index_stamp_is_taken_again_at_once_after_this_process_changes_a_script(tmp_path):
    maildir = tmp_path / "maildir"
    assert index_stamp(maildir) is None
    store = ScriptStore(account_folder(maildir))
    store.put("a", "discard;")
    first = index_stamp(maildir)
    assert first is not None
    store.activate("a")
    assert index_stamp(maildir) not in (None, first)


def test_index_stamp_sees_another_writers_change_after_recheck_after(tmp_path, monkeypatch):
    """Another process's change (here: the index written by hand) shows once RECHECK_AFTER
    has passed, and not one stat is taken for the account before that."""
    maildir = tmp_path / "maildir"
    forget_stamps()
    began = time.monotonic()
    assert index_stamp(maildir) is None
    taken = []
    real_stat = os.stat
    monkeypatch.setattr(scripts.os, "stat", lambda p, *a, **k: taken.append(p) or real_stat(p))
    folder = account_folder(maildir)
    folder.mkdir(parents=True)
    (folder / "index.json").write_text('{"active": null, "scripts": {}}')
    stamp = index_stamp(maildir)
    if time.monotonic() - began < scripts.RECHECK_AFTER:
        assert stamp is None and taken == []
    time.sleep(scripts.RECHECK_AFTER)
    assert index_stamp(maildir) is not None and len(taken) == 1
