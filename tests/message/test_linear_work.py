"""Hostile header and body text costs work in proportion to its size: each case here took
minutes of CPU time (a regular expression or a loop read the rest of the text again for
each piece of it) and is held to a few seconds, with its result checked."""

from __future__ import annotations

from mailsuite.message.addresses import MISSING_DOMAIN, MISSING_MAILBOX, parse_addresses
from mailsuite.message.binary import data_domain
from mailsuite.message.content import MessageContent
from mailsuite.message.decode import decode_transfer
from mailsuite.message.preview import preview_text
from mailsuite.message.structure import parse_message
from tests.cpu_bound import cpu_seconds


def test_a_from_of_unclosed_quoted_strings_is_read_in_one_pass():
    # `"\` repeated: each quote's string runs to a lone backslash at the end and is not a
    # quoted string; 40,000 of them cost 48 s when each quote was read on to the end.
    raw = b"From: " + b'"\\' * 100_000 + b"\r\n\r\nbody\r\n"
    with cpu_seconds(5):
        envelope = MessageContent(raw).envelope()
    assert envelope.from_ == [[b'" \\ ' * 99_999 + b'" \\', None, MISSING_MAILBOX, MISSING_DOMAIN]]


def test_a_quote_after_an_unclosed_one_is_still_a_plain_byte():
    assert parse_addresses(b'"\\"\\') == [[b'" \\ " \\', None, MISSING_MAILBOX, MISSING_DOMAIN]]
    assert parse_addresses(b'"a b" <x@y>, "\\') == [
        [b"a b", None, b"x", b"y"],
        [b'" \\', None, MISSING_MAILBOX, MISSING_DOMAIN],
    ]


def test_a_group_of_many_bare_words_is_read_in_one_pass():
    # Each member looked past all the words after it for a "<": 20,000 took 20 s.
    n = 200_000
    with cpu_seconds(5):
        found = parse_addresses(b"g: " + b"a " * n + b";")
    assert len(found) == n + 2
    assert found[0] == [None, None, b"g", None] and found[-1] == [None, None, None, None]
    assert found[1] == [None, None, b"a", MISSING_DOMAIN]


def test_a_group_member_in_angle_brackets_keeps_its_name():
    assert parse_addresses(b"g: a b <c@d>, e;") == [
        [None, None, b"g", None],
        [b"a b", None, b"c", b"d"],
        [None, None, b"e", MISSING_DOMAIN],
        [None, None, None, None],
    ]


def test_a_long_list_of_bare_addresses_reads_as_the_token_parser_reads_it():
    n = 200_000
    value = b", ".join(b"user%d@example.com" % i for i in range(n))
    with cpu_seconds(5):
        found = parse_addresses(value)
    assert len(found) == n and found[7] == [None, None, b"user7", b"example.com"]
    # Lists that are not bare addr-specs take the token parser: the same shapes as before.
    assert parse_addresses(b"a@b, ,c@d") == [
        [None, None, b"a", b"b"],
        [None, None, MISSING_MAILBOX, MISSING_DOMAIN],
        [None, None, b"c", b"d"],
    ]
    assert parse_addresses(b" a.b@c.d ,e@f") == [
        [None, None, b"a.b", b"c.d"],
        [None, None, b"e", b"f"],
    ]


def test_quoted_printable_with_a_long_run_of_blanks_inside_a_line():
    # A line ends in a blank (so blanks at line ends are dropped first), and a long run of
    # blanks sits inside another line: each blank of the run was a new try to the run's end.
    body = b"a \r\n" + b" " * 400_000 + b"x\r\n"
    with cpu_seconds(5):
        text = decode_transfer(body, "quoted-printable")
    assert text == b"a\r\n" + b" " * 400_000 + b"x\r\n"


def test_preview_of_html_with_unclosed_script_and_tags():
    # Within the 16 KB a preview reads: "<script" and "<" with nothing closing them were each
    # searched to the end of the text (0.2 s a message; here 40 messages).
    for body in (b"<script " * 2000, b"<b" * 8000, b"<style <head " * 1200):
        raw = b"Content-Type: text/html\r\n\r\nHello " + body
        with cpu_seconds(3):
            for _ in range(40):
                text = preview_text(raw, parse_message(raw))
        assert text.startswith("Hello <")


def test_preview_drops_script_style_and_head_up_to_their_end_tags():
    raw = (
        b"Content-Type: text/html\r\n\r\n<head><title>t</title></HEAD >Hi <script>x()</script"
        b"\t><b>there</b><style>p{}</style> <script>unclosed"
    )
    assert preview_text(raw, parse_message(raw)) == "Hi there unclosed"


def test_the_data_domain_of_lines_just_under_the_limit():
    # Every byte started an attempt at 999 octets that ran on to its line end: 3 s a MB.
    lines = (b"a" * 998 + b"\r\n") * 20_000
    with cpu_seconds(5):
        assert data_domain(lines) == "7bit"
        assert data_domain(lines + b"b" * 999) == "binary"
