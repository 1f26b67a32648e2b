"""The base subject SORT and THREAD compare (RFC 5256 §2.1) is found in time proportional to
the subject's length: each "(fwd)", "[blob]" and "[fwd: ...]" taken off copied or searched the
rest of the subject again, minutes for a long one."""

from __future__ import annotations

import pytest

from mailsuite.imap.commands.sort import base_subject, subject_form
from tests.cpu_bound import cpu_seconds

N = 100_000


@pytest.mark.parametrize(
    "subject, expected",
    [
        (b"x" + b"(fwd)" * N + b"y", ("x" + "(fwd)" * N + "y", False)),
        (b"x" + b" (fwd)" * N, ("x", True)),
        (b"re: " * N + b"x", ("x", True)),
        (b"[a]" * N + b" x", ("x", False)),
        (b"[a] " * N + b"re: x", ("x", True)),
        (b"[fwd: " * N + b"x" + b"]" * N, ("x", True)),
    ],
)
def test_base_subject_of_long_runs(subject, expected):
    with cpu_seconds(5):
        assert base_subject(subject) == expected
        assert subject_form(subject) == (expected[0].upper(), expected[1])


@pytest.mark.parametrize(
    "subject, expected",
    [
        (b"Re: [list] Fwd: hello (fwd)", ("hello", True)),
        (b"[list] [tag]", ("[tag]", False)),
        (b"[fwd: [list] re: x ]", ("x", True)),
        (b"[a] [b]re[c]:  [d]x", ("x", True)),
        (b"  (FWD)  ", ("", True)),
        (b"fw:x", ("x", True)),
    ],
)
def test_base_subject_steps(subject, expected):
    assert base_subject(subject) == expected
