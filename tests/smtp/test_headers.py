"""Submission header completion (RFC 6409 §8) and the Received: field (RFC 5321 §4.4)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.smtp.headers import (
    add_missing_headers,
    from_addresses,
    header_block_end,
    header_fields,
    header_index,
)
from mailsuite.smtp.received import received_header, with_keyword

MSG = b"From: Ann <ann@example.test>\r\nSubject: hi\r\n  folded\r\n\r\nbody\r\nDate: no\r\n"


def test_header_block_ends_at_empty_line():
    assert MSG[header_block_end(MSG) :] == b"\r\nbody\r\nDate: no\r\n"


def test_header_fields_are_unfolded_and_body_ignored():
    assert header_fields(MSG, "subject") == ["hi  folded"]
    assert header_fields(MSG, "date") == []


def test_header_index_holds_every_field_once_unfolded_by_lower_case_name():
    msg = b"Received: a\r\nreceived: b\r\n c\r\nMESSAGE-ID: <x@y>\r\n\r\nDate: body\r\n"
    assert header_index(msg) == {"received": ["a", "b c"], "message-id": ["<x@y>"]}
    assert add_missing_headers(msg, "h", fields=header_index(msg)).count(b"Message-ID") == 0


def test_from_addresses_handles_display_names_and_lists():
    assert from_addresses(MSG) == ["ann@example.test"]
    two = b'From: "B, C" <b@x.test>, d@y.test (D)\r\n\r\n'
    assert from_addresses(two) == ["b@x.test", "d@y.test"]
    assert from_addresses(b"Subject: none\r\n\r\n") is None


_FROMISH = st.text(
    alphabet=st.sampled_from(list("abcXYZ019.-_+!#'\"<>@,;:()[]\\ \t")), min_size=1, max_size=30
)
_NAME = st.text(alphabet=st.sampled_from(list('abXY09 .\t"')), max_size=10)
_PART = st.text(alphabet=st.sampled_from(list("abXY09.-_+")), min_size=1, max_size=8)
_SIMPLE = st.one_of(
    st.builds(lambda a, b: f"{a}@{b}", _PART, _PART),
    st.builds(
        lambda n, a, b, t: f"{n}<{a}@{b}>{t}", _NAME, _PART, _PART, st.sampled_from(["", " "])
    ),
    _FROMISH,
)


@settings(max_examples=3000, deadline=None)
@given(_SIMPLE)
def test_from_addresses_fast_path_agrees_with_email_utils(value):
    import email.utils

    msg = f"From: {value}\r\n\r\n".encode()
    values = header_index(msg).get("from")
    expected = [addr for _, addr in email.utils.getaddresses(values)] if values else None
    assert from_addresses(msg) == expected


def test_rfc6409_8_missing_date_and_message_id_are_added_in_the_header():
    out = add_missing_headers(MSG, "mail.example.test", now=0)
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"\r\nDate: " in head and b"\r\nMessage-ID: <" in head
    assert b"@mail.example.test>" in head
    assert body == b"body\r\nDate: no\r\n"


def test_existing_date_and_message_id_are_kept_as_is():
    msg = b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <a@b>\r\n\r\nx\r\n"
    assert add_missing_headers(msg, "h") == msg


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_header_functions_never_raise_on_random_bytes(data):
    header_block_end(data)
    from_addresses(data)
    out = add_missing_headers(data, "h.test")
    assert out.endswith(data[header_block_end(data) :])


def test_rfc3848_with_keywords():
    assert with_keyword(True, True, True, False) == "ESMTPSA"
    assert with_keyword(True, True, False, False) == "ESMTPS"
    assert with_keyword(True, False, False, False) == "ESMTP"
    assert with_keyword(False, False, False, False) == "SMTP"
    assert with_keyword(True, True, True, True) == "UTF8SMTPSA"


def test_received_header_shape_and_tls_comment():
    h = received_header(
        helo="client.test(evil)\r\nX: y",
        client_ip="192.0.2.1",
        hostname="mx.example.test",
        protocol="ESMTPS",
        queue_id="ABC",
        tls_info="TLS1.3 TLS_AES_256_GCM_SHA384",
        recipient="u@example.test",
        now=0,
    ).decode()
    assert h.startswith("Received: from client.test?evil???X:?y ([192.0.2.1])\r\n")
    assert "\t(using TLS1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n" in h
    assert "\tby mx.example.test (mailsuite) with ESMTPS id ABC\r\n" in h
    assert "\tfor <u@example.test>; " in h and h.endswith("\r\n")
    assert h.count("\r\n") == 4
