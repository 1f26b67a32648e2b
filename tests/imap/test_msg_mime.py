"""mailsuite.imap.mime: wire offsets, part numbering, ENVELOPE and BODYSTRUCTURE (RFC 3501 §7.4.2)."""

from __future__ import annotations

import pytest

from mailsuite.imap import mime
from mailsuite.imap.mime import MessageContent, find_part
from tests.imap import msg_fixtures as F


def part_bytes(raw: bytes, path: tuple[int, ...]) -> tuple[bytes, bytes]:
    c = MessageContent(raw)
    p = find_part(c.tree(), path)
    assert p is not None, path
    w = c.wire()
    return w[p.start : p.body_start], w[p.body_start : p.end]


def test_lf_and_crlf_storage_give_identical_wire_bytes_and_structure():
    lf = MessageContent(F.NESTED)
    crlf = MessageContent(F.NESTED.replace(b"\n", b"\r\n"))
    assert lf.wire() == crlf.wire()
    assert b"\n" not in lf.wire().replace(b"\r\n", b"")
    assert lf.bodystructure_bytes() == crlf.bodystructure_bytes()
    assert lf.header() == crlf.header()


def test_simple_message_bodystructure_uses_rfc2045_defaults_and_counts_lines():
    c = MessageContent(F.SIMPLE)
    # body "Hi Bob,\r\nthis is a test.\r\n" = 26 octets, 2 lines; defaults spelled as Dovecot
    assert c.bodystructure_bytes() == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 26 2 NIL NIL NIL NIL)'
    )
    assert c.bodystructure_bytes(False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 26 2)'
    )


def test_simple_envelope_field_order_and_sender_reply_to_default_to_from():
    env = MessageContent(F.SIMPLE).envelope_bytes()
    alice = b'(("Alice Example" NIL "alice" "example.test"))'
    assert env == (
        b'("Mon, 13 Nov 2023 10:00:00 +0000" "Hello there" '
        + alice
        + b" "
        + alice
        + b" "
        + alice
        + b' ((NIL NIL "bob" "example.test")) NIL NIL NIL "<simple.1@example.test>")'
    )


def test_envelope_groups_quoted_names_and_encoded_words_stay_raw():
    env = MessageContent(F.NESTED).envelope_bytes()
    # RFC 3501 §7.4.2: group start (NIL NIL "name" NIL) ... group end (NIL NIL NIL NIL)
    assert (
        # RFC 3501 §9: env-to = "(" 1*address ")": no SP between addresses
        # a name holding quotes goes out as a literal, as Dovecot sends it
        b'((NIL NIL "team" NIL)(NIL NIL "a" "example.org")'
        b'({12}\r\nQ "quoted" R NIL "q" "example.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "bob" "example.net"))'
    ) in env
    assert b'(("=?UTF-8?Q?J=C3=BCrgen?=" NIL "j" "example.de"))' in env
    # folded subject is unfolded (and, being folded, sent as a literal like Dovecot does),
    # encoded word untouched
    assert b"{34}\r\n=?UTF-8?B?w6nDqQ==?= nested folded " in env
    assert env.endswith(b' NIL "<parent@example.com>" "<nested.1@example.com>")')


def test_nested_multipart_bodystructure_exact():
    bs = MessageContent(F.NESTED).bodystructure_bytes()
    assert bs.startswith(
        b'((("text" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 17 0 NIL NIL NIL NIL)'
        b'("text" "html" ("charset" "utf-8") NIL NIL "7bit" 12 0 NIL NIL NIL NIL)'
        b' "alternative" ("boundary" "inner") NIL NIL NIL)'
    )
    # message/rfc822: body-fields, envelope, body, lines
    assert (
        b'("message" "rfc822" NIL NIL "forwarded" "7bit" 163 ("Wed, 15 Nov 2023 08:00:00 +0000"'
        b' "inner message"'
    ) in bs
    assert (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 39 1 NIL NIL NIL NIL) 6 NIL NIL'
        b" NIL NIL)"
    ) in bs
    # extension data: md5, disposition, language list, location
    assert (
        b'("application" "pdf" ("name*" "utf-8\'\'%E2%82%AC.pdf") "<att1@example.com>" NIL'
        b' "base64" 12 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("attachment" ("size" "10" "filename*"'
        b' "utf-8\'\'%E2%82%AC.pdf")) ("en" "de") "http://example.com/x.pdf")'
    ) in bs
    assert bs.endswith(b' "mixed" ("boundary" "outer") NIL NIL NIL)')


def test_non_extensible_body_has_no_extension_data():
    body = MessageContent(F.NESTED).bodystructure_bytes(False)
    assert b"attachment" not in body and b"boundary" not in body
    assert body.endswith(b' "base64" 12) "mixed")')


def test_part_numbers_into_multipart_and_encapsulated_message():
    assert part_bytes(F.NESTED, (1, 1)) == (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        b"Caf=C3=A9 au lait",
    )
    assert part_bytes(F.NESTED, (1, 2))[1] == "<p>Café</p>".encode()
    head, body = part_bytes(F.NESTED, (2,))
    assert head == b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n"
    assert body.startswith(b"From: Carol") and body.endswith(b"inner body zebracorn")
    # 2.1 is the encapsulated message's only (non-multipart) part: its body
    assert part_bytes(F.NESTED, (2, 1))[1] == b"inner body line 1\r\ninner body zebracorn"
    assert part_bytes(F.NESTED, (3,))[1] == b"JVBERi0xLjQK"
    c = MessageContent(F.NESTED)
    assert find_part(c.tree(), (4,)) is None
    assert find_part(c.tree(), (1, 3)) is None
    assert find_part(c.tree(), (2, 2)) is None


def test_single_part_message_has_only_part_one():
    c = MessageContent(F.SIMPLE)
    p = find_part(c.tree(), (1,))
    assert p is c.tree()
    assert find_part(c.tree(), (2,)) is None


def test_missing_final_boundary_ends_last_part_at_end_of_message():
    _, body = part_bytes(F.MISSING_FINAL, (2,))
    assert body == b"second, never closed\r\n"
    assert part_bytes(F.MISSING_FINAL, (1,))[1] == b"first"


def test_multipart_without_delimiters_reports_one_empty_text_part():
    # body-type-mpart needs at least one body (RFC 3501 §9); Dovecot reports an empty one
    bs = MessageContent(F.NO_PARTS).bodystructure_bytes()
    assert bs == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"'
        b' ("boundary" "nothere") NIL NIL NIL)'
    )
    assert MessageContent(F.NO_PARTS).bodystructure_bytes(False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )


def test_multipart_without_boundary_parameter_has_no_parts():
    bs = MessageContent(F.NO_BOUNDARY).bodystructure_bytes()
    assert bs == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"'
        b" NIL NIL NIL NIL)"
    )


def test_eight_bit_header_values_go_out_as_literals():
    env = MessageContent(F.EIGHT_BIT).envelope_bytes()
    subject = "Grüße aus Köln".encode()
    assert b"{%d}\r\n" % len(subject) + subject in env
    assert mime.decode_header_value(b"Gr\xc3\xbc\xc3\x9fe") == "Grüße"


def test_boundary_that_prefixes_a_longer_line_is_not_a_delimiter():
    one = part_bytes(F.PREFIX_BOUNDARY, (1,))[1]
    assert one == b"line with --abc inside\r\n--abc not a delimiter"
    # the delimiter line "--ab  " carries transport padding
    assert part_bytes(F.PREFIX_BOUNDARY, (2,))[1] == b"two"


def test_digest_parts_default_to_message_rfc822():
    bs = MessageContent(F.DIGEST).bodystructure_bytes()
    assert bs.startswith(b'(("message" "rfc822" NIL NIL NIL "7bit" 40 (NIL "first digest entry"')


def test_header_without_blank_line_and_empty_message():
    c = MessageContent(F.HEADER_ONLY)
    assert c.header() == b"Subject: no body\r\nFrom: x@y\r\n"
    assert c.wire()[len(c.header()) :] == b""
    e = MessageContent(b"")
    assert e.header() == b""
    assert e.bodystructure_bytes().startswith(b'("text" "plain"')
    assert e.envelope_bytes() == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_filter_fields_is_case_insensitive_and_keeps_continuations():
    block = b"Subject: a\r\n b\r\nX-Tuid: 123\r\nfrom: me\r\nTo: you\r\n\r\n"
    assert mime.filter_fields(block, {b"subject", b"x-tuid"}, False) == (
        b"Subject: a\r\n b\r\nX-Tuid: 123\r\n\r\n"
    )
    assert mime.filter_fields(block, {b"subject", b"x-tuid"}, True) == (
        b"from: me\r\nTo: you\r\n\r\n"
    )
    # nothing matches: only the blank line (RFC 3501 §6.4.5)
    assert mime.filter_fields(block, {b"cc"}, False) == b"\r\n"


def test_parse_fields_skips_lines_that_are_not_fields():
    block = b"From foo@bar Mon Jan 1\r\nSubject: ok\r\nnot a field\r\n\r\n"
    assert mime.parse_fields(block) == [(b"subject", b"Subject: ok\r\n")]


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
    assert mime.decode_header_value(value) == expected


def test_rfc2231_continuations_merge_and_plain_ones_concatenate():
    main, params = mime.parse_params(b'attachment; filename*0="long"; filename*1="name.txt"')
    assert main == "attachment" and params == [("filename", "longname.txt")]
    _, params = mime.parse_params(b"x; name*0*=utf-8''%E2%82%AC; name*1=\" a.pdf\"")
    assert params == [("name*", "utf-8''%E2%82%AC%20a.pdf")]
    assert mime.decode_rfc2231("utf-8''%E2%82%AC%20a.pdf") == "€ a.pdf"


def test_params_with_comments_quotes_and_semicolons_in_values():
    main, params = mime.parse_params(b'text/plain (comment); charset="utf-8"; name="a;b.txt"')
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
    assert mime.parse_addresses(value) == expected


def test_decode_transfer_tolerates_broken_base64_and_qp():
    assert mime.decode_transfer(b"aGVs\r\nbG8=", "base64") == b"hello"
    assert mime.decode_transfer(b"aGVsbG8", "BASE64") == b"hello"  # missing padding
    assert mime.decode_transfer(b"!!!", "base64") == b""
    assert mime.decode_transfer(b"a=3Db=\r\nc", "quoted-printable") == b"a=bc"
    with pytest.raises(mime.UnknownTransferEncoding):
        mime.decode_transfer(b"x", "x-uuencode", strict=True)


def test_part_text_decodes_transfer_encoding_and_charset():
    c = MessageContent(F.BASE64_TEXT)
    assert mime.part_text(c.wire(), c.tree()) == "Hello Zebracorn and Grüße"
    n = MessageContent(F.NESTED)
    assert mime.part_text(n.wire(), find_part(n.tree(), (1, 1))) == "Café au lait"


def test_deep_nesting_is_cut_off_instead_of_recursing_forever():
    raw = b""
    for i in range(200):
        raw += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
    raw += b"\nleaf\n"
    c = MessageContent(raw)
    assert c.bodystructure_bytes().count(b"(") < 400
