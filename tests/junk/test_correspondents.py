"""The people an account writes to: noted from the mail it submits, written to its filter file
only when new."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailsuite.config import config_from_dict
from mailsuite.delivery import Envelope, Recipient
from mailsuite.junk import filter as filter_module
from mailsuite.junk import model
from mailsuite.junk.model import FilterData
from mailsuite.services import Services

USER = "alice@example.test"


def test_known_correspondents_are_not_written_again(tmp_path):
    path = tmp_path / "f.sqlite"
    data = FilterData(path)
    data.add_correspondents(["Pal@Friends.example", "x@example.net", "not-an-address"])
    with sqlite3.connect(path) as watcher:
        rows = watcher.execute("SELECT address, last FROM correspondents ORDER BY 1").fetchall()
        assert [a for a, _ in rows] == ["pal@friends.example", "x@example.net"]
        version = watcher.execute("PRAGMA data_version").fetchone()[0]
        data.add_correspondents(["pal@friends.example", "X@Example.NET"])
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version  # no commit
        assert watcher.execute(
            "SELECT address, last FROM correspondents ORDER BY 1"
        ).fetchall() == (rows)
        data.add_correspondents(["x@example.net", "New@Friends.example"])
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != version
        assert [a for (a,) in watcher.execute("SELECT address FROM correspondents ORDER BY 1")] == [
            "new@friends.example",
            "pal@friends.example",
            "x@example.net",
        ]
    assert data.known_correspondent(["new@friends.example"]) == "new@friends.example"
    data.close()


def test_known_correspondents_beyond_what_is_held_are_asked_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "CORRESPONDENTS_IN_MEMORY", 2)
    path = tmp_path / "f.sqlite"
    FilterData(path).add_correspondents(["a@x.example", "b@x.example", "c@x.example"])
    data = FilterData(path)  # reads the file: too many correspondents to hold
    assert data.known_correspondent(["c@x.example"]) == "c@x.example"
    assert data._correspondents is None
    with sqlite3.connect(path) as watcher:
        version = watcher.execute("PRAGMA data_version").fetchone()[0]
        data.add_correspondents(["A@x.example", "c@x.example"])
        assert watcher.execute("PRAGMA data_version").fetchone()[0] == version
        data.add_correspondents(["a@x.example", "d@x.example"])
        assert watcher.execute("PRAGMA data_version").fetchone()[0] != version
        assert watcher.execute("SELECT count(*) FROM correspondents").fetchone()[0] == 4
    assert data.known_correspondent(["d@x.example"]) == "d@x.example"
    data.close()


def _services(tmp_path: Path) -> Services:
    config = config_from_dict(
        {"data_dir": str(tmp_path / "data"), "allow_root": True, "hostname": "mx.example.test"},
        base=tmp_path,
    )
    services = Services.create(config, with_tls=False)
    services.accounts.add_user(USER, "a-password")
    return services


def _submit(junk, to: str) -> None:
    envelope = Envelope(USER, [Recipient(to)], authenticated_user=USER, client_ip="127.0.0.1")
    assert junk.judge(envelope, b"Subject: hi\r\n\r\nhello\r\n", [], [to]) == {}


def test_mail_submitted_by_an_account_makes_its_recipients_correspondents(tmp_path):
    services = _services(tmp_path)
    services.store.create_mailbox(USER)
    junk = services.junk
    try:
        _submit(junk, "Pal@Friends.example")
        mbox = services.store.mailbox(USER)
        assert junk.model(mbox).known_correspondent(["pal@friends.example"])
    finally:
        junk.close()


def test_an_account_without_maildir_is_looked_for_again_only_after_a_while(tmp_path, monkeypatch):
    services = _services(tmp_path)
    junk = services.junk
    looks = []
    real_mailbox = services.store.mailbox
    monkeypatch.setattr(
        services.store, "mailbox", lambda address: (looks.append(address), real_mailbox(address))[1]
    )
    try:
        _submit(junk, "one@far.example")  # no Maildir: nothing to note it in
        _submit(junk, "two@far.example")
        assert len(looks) == 1
        services.store.create_mailbox(USER)
        _submit(junk, "three@far.example")  # within the while: not looked for
        monkeypatch.setattr(filter_module.time, "monotonic", lambda: 1e12)
        _submit(junk, "four@far.example")
        data = junk.model(real_mailbox(USER))
        assert data.known_correspondent(["four@far.example"])
        assert not data.known_correspondent(["three@far.example", "one@far.example"])
    finally:
        junk.close()
