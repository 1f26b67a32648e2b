"""The command line buffer takes pipelined lines off in time proportional to its size: each
line taken off a bytes buffer copied the rest of it, the square of the buffer in all."""

from __future__ import annotations

from mailsuite.smtp.parser import LINE_TOO_LONG, LineBuffer
from tests.cpu_bound import cpu_seconds


def test_many_pipelined_lines_in_one_buffer():
    n = 500_000
    lines = LineBuffer(512)
    lines.feed(b"NOOP\r\n" * n + b"QUIT")
    with cpu_seconds(5):
        got = [lines.next_line() for _ in range(n)]
    assert got == [b"NOOP"] * n
    assert lines.next_line() is None and lines.take_rest() == b"QUIT"


def test_a_long_line_among_others_is_reported_once():
    lines = LineBuffer(10)
    lines.feed(b"a\r\n" + b"x" * 30 + b"\r\nb\n")
    assert [lines.next_line() for _ in range(4)] == [b"a", LINE_TOO_LONG, b"b", None]
    assert lines.pending() == 0
