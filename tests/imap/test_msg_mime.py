"""mailsuite.imap.structure_wire: ENVELOPE and BODY/BODYSTRUCTURE wire bytes (RFC 3501 §7.4.2)."""

from __future__ import annotations

from mailsuite.imap.structure_wire import bodystructure_bytes, envelope_bytes
from mailsuite.message.content import MessageContent
from mailsuite.message.decode import decode_header_value
from tests.imap import msg_fixtures as F


def test_simple_message_bodystructure_uses_rfc2045_defaults_and_counts_lines():
    c = MessageContent(F.SIMPLE)
    # body "Hi Bob,\r\nthis is a test.\r\n" = 26 octets, 2 lines; defaults spelled as Dovecot
    assert bodystructure_bytes(c.tree()) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 26 2 NIL NIL NIL NIL)'
    )
    assert bodystructure_bytes(c.tree(), False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 26 2)'
    )


def test_simple_envelope_field_order_and_sender_reply_to_default_to_from():
    env = envelope_bytes(MessageContent(F.SIMPLE).envelope())
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
    env = envelope_bytes(MessageContent(F.NESTED).envelope())
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
    bs = bodystructure_bytes(MessageContent(F.NESTED).tree())
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
    body = bodystructure_bytes(MessageContent(F.NESTED).tree(), False)
    assert b"attachment" not in body and b"boundary" not in body
    assert body.endswith(b' "base64" 12) "mixed")')


def test_multipart_without_delimiters_reports_one_empty_text_part():
    # body-type-mpart needs at least one body (RFC 3501 §9); Dovecot reports an empty one
    bs = bodystructure_bytes(MessageContent(F.NO_PARTS).tree())
    assert bs == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"'
        b' ("boundary" "nothere") NIL NIL NIL)'
    )
    assert bodystructure_bytes(MessageContent(F.NO_PARTS).tree(), False) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )


def test_multipart_without_boundary_parameter_has_no_parts():
    bs = bodystructure_bytes(MessageContent(F.NO_BOUNDARY).tree())
    assert bs == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed"'
        b" NIL NIL NIL NIL)"
    )


def test_eight_bit_header_values_go_out_as_literals():
    env = envelope_bytes(MessageContent(F.EIGHT_BIT).envelope())
    subject = "Grüße aus Köln".encode()
    assert b"{%d}\r\n" % len(subject) + subject in env
    assert decode_header_value(b"Gr\xc3\xbc\xc3\x9fe") == "Grüße"


def test_digest_parts_default_to_message_rfc822():
    bs = bodystructure_bytes(MessageContent(F.DIGEST).tree())
    assert bs.startswith(b'(("message" "rfc822" NIL NIL NIL "7bit" 40 (NIL "first digest entry"')


def test_header_without_blank_line_and_empty_message():
    c = MessageContent(F.HEADER_ONLY)
    assert c.header() == b"Subject: no body\r\nFrom: x@y\r\n"
    assert c.wire()[len(c.header()) :] == b""
    e = MessageContent(b"")
    assert e.header() == b""
    assert bodystructure_bytes(e.tree()).startswith(b'("text" "plain"')
    assert envelope_bytes(e.envelope()) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_deep_nesting_is_cut_off_instead_of_recursing_forever():
    raw = b""
    for i in range(200):
        raw += b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i)
    raw += b"\nleaf\n"
    c = MessageContent(raw)
    assert bodystructure_bytes(c.tree()).count(b"(") < 400
