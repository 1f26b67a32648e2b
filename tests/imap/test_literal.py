"""`WireCursor`: stored bytes fed in pieces, split anywhere, give exactly the wire form that
`to_wire` gives of the whole (a CR before every LF that lacks one, RFC 3501 §2.2), and
`MessageLiteral.bounds` clips a <partial> range as slicing the whole would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailsuite.imap.literal import MessageLiteral, WireCursor
from mailsuite.message.lines import to_wire

# Bytes where line ends are frequent: CR, LF, NUL and a letter.
stored_bytes = st.lists(st.sampled_from([b"\r", b"\n", b"\x00", b"a", b"\r\n"])).map(b"".join)


@given(stored_bytes, st.lists(st.integers(0, 40), max_size=8))
def test_pieces_split_anywhere_convert_as_the_whole(raw, cuts):
    cursor = WireCursor()
    points = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    out = b"".join(cursor.feed(raw[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert out == to_wire(raw)
    assert cursor.wire_pos == len(out)


def test_a_crlf_split_between_pieces_stays_one_line_end():
    cursor = WireCursor()
    assert cursor.feed(b"a\r") + cursor.feed(b"\nb\n") == b"a\r\nb\r\n"


class _Msg:
    def __init__(self, wire_size: int):
        self.wire_size = wire_size


@given(st.integers(0, 50), st.integers(0, 60), st.one_of(st.none(), st.integers(0, 60)))
def test_bounds_clip_as_slicing_does(size, origin, length):
    wire = bytes(range(size))
    start, end = MessageLiteral(None, _Msg(size), origin, length).bounds()
    expected = wire[origin:] if length is None else wire[origin : origin + length]
    assert wire[start:end] == expected
