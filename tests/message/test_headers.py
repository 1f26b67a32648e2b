"""mailsuite.message headers: fields, RFC 2047 words, RFC 2231 parameters, addresses."""

from __future__ import annotations

import pytest

from mailsuite.message.addresses import parse_addresses
from mailsuite.message.decode import decode_header_value
from mailsuite.message.headers import filter_fields, parse_fields
from mailsuite.message.params import decode_rfc2231, parse_params


def test_filter_fields_is_case_insensitive_and_keeps_continuations():
    block = b"Subject: a\r\n b\r\nX-Tuid: 123\r\nfrom: me\r\nTo: you\r\n\r\n"
    assert filter_fields(block, {b"subject", b"x-tuid"}, False) == (
        b"Subject: a\r\n b\r\nX-Tuid: 123\r\n\r\n"
    )
    assert filter_fields(block, {b"subject", b"x-tuid"}, True) == (b"from: me\r\nTo: you\r\n\r\n")
    # nothing matches: only the blank line (RFC 3501 §6.4.5)
    assert filter_fields(block, {b"cc"}, False) == b"\r\n"


def test_parse_fields_skips_lines_that_are_not_fields():
    block = b"From foo@bar Mon Jan 1\r\nSubject: ok\r\nnot a field\r\n\r\n"
    assert parse_fields(block) == [(b"subject", b"Subject: ok\r\n")]


@pytest.mark.parametrize(
    "value,expected",
    [
        (b"=?UTF-8?B?w6nDqQ==?= =?UTF-8?Q?_x?= test", "éé x test"),
        (b"=?ISO-8859-1?Q?Gr=FC=DFe?=", "Grüße"),
        (b"plain text", "plain text"),
        (b"=?unknown-cs?Q?abc?=", "abc"),
        (b"=?UTF-8?B?not base64!?=", "=?UTF-8?B?not base64!?="),
        (b"a\r\n b", "a b"),
        (b"=?utf-8*en?q?hi?=", "hi"),
    ],
)
def test_decode_header_value_rfc2047(value, expected):
    assert decode_header_value(value) == expected


def test_rfc2231_continuations_merge_and_plain_ones_concatenate():
    main, params = parse_params(b'attachment; filename*0="long"; filename*1="name.txt"')
    assert main == "attachment" and params == [("filename", "longname.txt")]
    _, params = parse_params(b"x; name*0*=utf-8''%E2%82%AC; name*1=\" a.pdf\"")
    assert params == [("name*", "utf-8''%E2%82%AC%20a.pdf")]
    assert decode_rfc2231("utf-8''%E2%82%AC%20a.pdf") == "€ a.pdf"


def test_params_with_comments_quotes_and_semicolons_in_values():
    main, params = parse_params(b'text/plain (comment); charset="utf-8"; name="a;b.txt"')
    assert main == "text/plain"
    assert params == [("charset", "utf-8"), ("name", "a;b.txt")]


@pytest.mark.parametrize(
    "value,expected",
    [
        (b"a@b.c", [[None, None, b"a", b"b.c"]]),
        (
            b"Joe Q. Public <john.q.public@example.com>",
            [[b"Joe Q. Public", None, b"john.q.public", b"example.com"]],
        ),
        (b"<@r1,@r2:u@h>", [[None, b"@r1,@r2", b"u", b"h"]]),
        (b"u@h (Real Name)", [[b"Real Name", None, b"u", b"h"]]),
        (b"localonly", [[None, None, b"localonly", b"MISSING_DOMAIN"]]),
        (
            b"undisclosed-recipients:;",
            [[None, None, b"undisclosed-recipients", None], [None, None, None, None]],
        ),
        (b"", None),
        (b'"a,b" <x@y>, c@d', [[b"a,b", None, b"x", b"y"], [None, None, b"c", b"d"]]),
    ],
)
def test_parse_addresses(value, expected):
    assert parse_addresses(value) == expected
