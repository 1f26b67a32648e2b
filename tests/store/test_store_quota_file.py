"""Reading the maildirsize file's delta lines: the summing shortcut for well-formed files gives
exactly what the line-by-line reading gives, for any file."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mailsuite.store.quota import _add_deltas, _add_lines


def test_well_formed_deltas_are_summed():
    lines = b"\n".join(b"%d %d" % (n, 1 if n > 0 else -1) for n in range(-50, 3000, 7))
    assert _add_deltas(lines, 10, 1) == _add_lines(lines, 10, 1)


def test_lines_that_look_right_in_total_but_not_one_by_one():
    # As many spaces and tokens as two good lines, in the wrong places.
    assert _add_deltas(b"1 2 3\n4", 0, 0) == (1, 2)
    assert _add_deltas(b"1 \n2 3", 0, 0) == (2, 3)


@given(
    st.lists(st.sampled_from([b"12 1", b"-7 -1", b" 5", b"1 2 3", b"x y", b"", b"4  2", b"3\t1"]))
)
def test_any_mix_of_lines_reads_as__add_lines(parts):
    lines = b"\n".join(parts)
    assert _add_deltas(lines, 0, 0) == _add_lines(lines, 0, 0)
