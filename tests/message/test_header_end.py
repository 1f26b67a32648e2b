"""message.lines.header_end: where a message's header ends, searched in growing windows."""

from __future__ import annotations

import random

from mailsuite.message import lines
from mailsuite.message.lines import header_end


def test_blank_lines_of_each_form():
    assert header_end(b"A: 1\r\nB: 2\r\n\r\nbody\n\nmore") == 14
    assert header_end(b"A: 1\nB: 2\n\nbody\r\n\r\n") == 11
    assert header_end(b"A: 1\n\r\nbody") == 7  # the first blank line, whichever its form
    assert header_end(b"\r\nbody") == 2 and header_end(b"\nbody") == 1
    assert header_end(b"A: 1\r\nB: 2\r\n") == len(b"A: 1\r\nB: 2\r\n")  # none: all header


def test_the_first_blank_line_is_found_across_window_ends(monkeypatch):
    """Windows of a few bytes put blank lines across their ends; the answer is the one a
    search of the whole text gives (the earliest blank line of either form)."""
    monkeypatch.setattr(lines, "HEADER_WINDOW", 3)
    rnd = random.Random(7)
    for _ in range(20000):
        raw = bytes(rnd.choice(b"\r\nab") for _ in range(rnd.randrange(60)))
        if raw[:1] == b"\n":
            expected = 1
        elif raw[:2] == b"\r\n":
            expected = 2
        else:
            ends = [i + 2 for i in range(len(raw)) if raw[i : i + 2] == b"\n\n"]
            ends += [i + 3 for i in range(len(raw)) if raw[i : i + 3] == b"\n\r\n"]
            expected = min(ends, default=len(raw))
        assert header_end(raw) == expected, raw
