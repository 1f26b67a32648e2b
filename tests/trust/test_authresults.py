"""Authentication-Results (RFC 8601) formatting and forged-field removal, as pure functions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.trust.authresults import (
    ResInfo,
    authserv_id,
    format_header,
    quote_value,
    strip_forged,
)


def test_format_folds_one_clause_per_line():
    h = format_header(
        "mx.example.test",
        [
            ResInfo("spf", "pass", props=[("smtp.mailfrom", "a@example.org")]),
            ResInfo("dkim", "fail", "body hash mismatch", [("header.d", "example.org")]),
        ],
    )
    assert h == (
        b"Authentication-Results: mx.example.test;\r\n"
        b"\tspf=pass smtp.mailfrom=a@example.org;\r\n"
        b"\tdkim=fail (body hash mismatch) header.d=example.org\r\n"
    )


def test_format_no_result_and_lf():
    assert format_header("mx", [], b"\n") == b"Authentication-Results: mx;\n\tnone\n"


def test_values_are_quoted_when_not_tokens():
    assert quote_value("example.org") == "example.org"
    assert quote_value("user+tag@example.org") == "user+tag@example.org"
    assert quote_value('we "ird"@example.org') == '"we \\"ird\\"@example.org"'
    assert quote_value("a;b") == '"a;b"'


def test_comment_cannot_break_out():
    h = format_header("mx", [ResInfo("spf", "permerror", "bad (nested) record")])
    assert b"(bad  nested  record)" in h


def test_authserv_id_forms():
    assert authserv_id(b" mx.example.test; spf=pass") == "mx.example.test"
    assert authserv_id(b" (c (nested)) mx.example.test 1; none") == "mx.example.test"
    assert authserv_id(b' "mx.example.test"; none') == "mx.example.test"
    assert authserv_id(b"   ") is None


def test_strip_forged_only_in_header_section():
    data = (
        b"Received: x\r\n"
        b"authentication-results : MX.example.test.;\r\n\tspf=pass\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n"
        b"Subject: s\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.test; body line\r\n"
    )
    out, removed = strip_forged(data, "mx.example.test")
    assert removed == 1
    assert out == (
        b"Received: x\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n"
        b"Subject: s\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.test; body line\r\n"
    )


def test_strip_forged_keeps_lookalike_ids():
    data = b"Authentication-Results: mx.example.test.evil; spf=pass\n\nbody\n"
    assert strip_forged(data, "mx.example.test") == (data, 0)


_line = st.one_of(
    st.just(b"Authentication-Results: mx.example.test; spf=pass"),
    st.just(b"Authentication-Results: other.example; dkim=pass"),
    st.just(b"\tfolded continuation"),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, max_size=12), st.binary(max_size=60), st.sampled_from([b"\r\n", b"\n"]))
def test_strip_forged_never_touches_the_body(lines, body, nl):
    head = b"".join(line + nl for line in lines if line.strip())
    data = head + nl + body
    out, removed = strip_forged(data, "mx.example.test")
    assert out.endswith(nl + body)
    assert len(out) <= len(data)
    assert (removed == 0) == (out == data)
    rest, again = strip_forged(out, "mx.example.test")
    assert again == 0 and rest == out
