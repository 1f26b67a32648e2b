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


# sha256 of the wire form of every item kind whose rendering the parsed cache keeps, over the
# message fixtures, by `mailsuite.imap.fetch.KEPT_VERSION`.
KEPT_WIRE_DIGESTS = {1: "20f5b520c1414dec60042584646c52375cf6f5b8b11dab80fafefdfbde0ef8f4"}


class _Msg:
    def __init__(self, raw):
        self.key, self.uid, self.size = "k", 1, len(raw)
        self.wire_size, self.internaldate, self.modseq = len(raw), 1700000000.0, 1
        self.flags = frozenset()


def test_the_kept_version_changes_with_the_wire_form_of_kept_items():
    """FETCH keeps what it rendered in the parsed cache across restarts, under names carrying
    `KEPT_VERSION`: a change of these items' wire form must come with a new version (and a new
    digest here), or a restarted server would go on answering with the old form."""
    import hashlib

    from mailsuite.imap.fetch import KEPT_VERSION, fetch_response, parse_fetch_items
    from mailsuite.imap.parser import parse_line
    from mailsuite.message.content import MessageContent
    from tests.imap import msg_fixtures as F

    items = (
        b"(ENVELOPE BODYSTRUCTURE BODY EMAILID PREVIEW BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]"
        b" BODY.PEEK[HEADER.FIELDS.NOT (SUBJECT)])"
    )
    req = parse_fetch_items(parse_line(b"a FETCH 1 " + items).args[1:])
    digest = hashlib.sha256()
    for raw in (F.SIMPLE, F.NO_MIME, F.NESTED, F.EIGHT_BIT, F.BINARY_NUL, F.DIGEST, F.HEADER_ONLY):
        msg = _Msg(raw)
        digest.update(
            b"".join(fetch_response(req, 1, msg, msg.flags, lambda m, raw=raw: MessageContent(raw)))
        )
    assert digest.hexdigest() == KEPT_WIRE_DIGESTS.get(KEPT_VERSION), (
        "the wire form of a kept FETCH item changed: raise fetch.KEPT_VERSION"
    )
