"""The memo of rendered FETCH items: one shelf per item and Maildir, one byte budget."""

from __future__ import annotations

from mailsuite.imap import fetch_memo
from mailsuite.imap.fetch_memo import RenderedMemo


def test_the_first_put_goes_first_across_every_shelf():
    memo = RenderedMemo(budget_bytes=3 * (fetch_memo._OVERHEAD + 100))
    envelopes = memo.shelf("/mail/a", "E")
    fields = memo.shelf("/mail/a", "F")
    memo.put(envelopes, ("k1", 1), b"e" * 100)
    memo.put(fields, ("k1", 1), b"f" * 100)
    memo.put(envelopes, ("k2", 1), b"e" * 100)
    assert len(memo) == 3
    memo.put(fields, ("k2", 1), b"f" * 100)
    assert ("k1", 1) not in envelopes
    assert fields[("k1", 1)] == b"f" * 100
    assert len(memo) == 3
    assert memo.used <= memo.budget


def test_one_shelf_per_item_and_maildir():
    memo = RenderedMemo()
    assert memo.shelf("/mail/a", "E") is memo.shelf("/mail/a", "E")
    assert memo.shelf("/mail/a", "E") is not memo.shelf("/mail/b", "E")
    assert memo.shelf("/mail/a", "E") is not memo.shelf("/mail/a", "S")


def test_clear_empties_the_shelves_renderers_hold(monkeypatch):
    monkeypatch.setattr(fetch_memo, "_SHELVES_KEPT", 2)
    memo = RenderedMemo()
    held = memo.shelf("/mail/a", "E")
    memo.put(held, ("k", 1), b"x")
    memo.shelf("/mail/a", "S")
    memo.shelf("/mail/a", "B")  # past the number of shelves kept: all emptied
    assert not held
    memo.put(held, ("k", 1), b"x")  # a renderer still holding it goes on using it
    memo.clear()
    assert not held and memo.used == 0
