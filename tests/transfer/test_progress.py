"""The progress bar is drawn only on a terminal; the summary line always goes to stdout."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.progress import Progress
from mailsuite.transfer.imapresponse import ResponseError, parse_fetch, parse_list
from mailsuite.transfer.progress import TransferStats


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_terminal_and_notes_kept():
    tty, out = Terminal(), io.StringIO()
    p = Progress(tty)
    p.start("INBOX", 4)
    for _ in range(4):
        p.advance()
    p.note("skipped INBOX UID 3: empty message")
    stats = TransferStats(copied=3, copied_bytes=3 * 1024 * 1024, folders={"INBOX"})
    stats.skipped.append(("INBOX UID 3", "empty message"))
    p.finish(stats.summary(), out)
    assert "[##############################] 4/4" in tty.getvalue()
    assert "skipped INBOX UID 3: empty message\n" in tty.getvalue()
    assert out.getvalue().startswith("imported 3 messages (3.0 MiB) in 1 folder, 1 skipped, ")


def test_no_bar_on_a_pipe():
    pipe, out = io.StringIO(), io.StringIO()
    p = Progress(pipe)
    p.start("INBOX", 2)
    p.advance(2)
    p.finish("done", out)
    assert pipe.getvalue() == "" and out.getvalue() == "done\n"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60), st.tuples(st.binary(max_size=40), st.binary(max_size=20))
        ),
        max_size=5,
    )
)
def test_response_reader_never_fails_other_than_response_error(items):
    for parse in (parse_fetch, parse_list):
        try:
            parse(items)
        except ResponseError:
            pass


def test_nested_list_where_a_name_belongs_is_a_response_error():
    import pytest

    with pytest.raises(ResponseError):
        parse_fetch([b"1 ((a) b)"])
    with pytest.raises(ResponseError):
        parse_list([b'(x) ((y)) "z"'])
