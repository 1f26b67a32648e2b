"""The IMAP URL parser (RFC 5092) with URLAUTH's forms (RFC 4467 §3, §9): pure, no server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsuite.urlauth.url import BadUrl, parse_message_url, parse_url_rump, without_token

FULL = (
    "imap://joe%40example.test@Mail.Example.Test/INBOX;UIDVALIDITY=7/;UID=20/;Section=1.2"
    ";EXPIRE=2030-01-02T03:04:05Z;URLAUTH=submit+fred%40example.test"
    ":INTERNAL:0191354A473744909de610943775f92038abcdef01"
)


def test_urlauth_url_keeps_its_rump_byte_for_byte_rfc4467_s6():
    ref = parse_message_url(FULL, urlauth=True)
    auth = ref.auth
    # No %-decoding and no case folding of the signed part, the host included.
    assert auth.rump == FULL[: FULL.index(":INTERNAL")]
    assert (ref.user, ref.host, ref.mailbox, ref.uidvalidity, ref.uid, ref.section) == (
        "joe@example.test",
        "mail.example.test",
        "INBOX",
        7,
        20,
        "1.2",
    )
    assert (auth.kind, auth.access_user, auth.mechanism) == (
        "submit",
        "fred@example.test",
        "INTERNAL",
    )
    assert auth.token == "0191354a473744909de610943775f92038abcdef01"
    assert auth.expire == 1893553445.0


@pytest.mark.parametrize(
    "access, kind, user",
    [
        ("authuser", "authuser", None),
        ("ANONYMOUS", "anonymous", None),
        ("User+b%40x", "user", "b@x"),
    ],
)
def test_access_identifiers_rfc4467_s3(access, kind, user):
    ref = parse_url_rump(f"imap://a%40x@h/INBOX/;UID=1;URLAUTH={access}")
    assert (ref.auth.kind, ref.auth.access_user, ref.auth.token) == (kind, user, None)


def test_partial_with_urlauth_rfc5550():
    ref = parse_message_url(
        "imap://a%40x@h/INBOX/;UID=3/;SECTION=TEXT/;PARTIAL=10.20;URLAUTH=authuser:internal:"
        + "0" * 42,
        urlauth=True,
    )
    assert (ref.section, ref.partial, ref.auth.kind) == ("TEXT", (10, 20), "authuser")


@pytest.mark.parametrize(
    "url",
    [
        "imap://h/INBOX/;UID=1;URLAUTH=authuser",  # no owner (RFC 4467 §7 check 2)
        "imap://a%40x@h/INBOX/;UID=1",  # no access identifier
        "imap://a%40x@h/INBOX/;UID=1;URLAUTH=authuser:internal:" + "0" * 32,  # signed already
        "imap://a%40x@h/INBOX/;UID=1;URLAUTH=someone",
        "imap://a%40x@h/INBOX/;UID=1;EXPIRE=2030-01-02T03:04:05;URLAUTH=authuser",  # no zone
        "imap://a%40x@h/INBOX;URLAUTH=authuser",  # a whole mailbox (RFC 4467 §3)
    ],
)
def test_rumps_genurlauth_refuses(url):
    with pytest.raises(BadUrl):
        parse_url_rump(url)


def test_short_token_is_malformed():
    with pytest.raises(BadUrl):
        parse_message_url("imap://a%40x@h/INBOX/;UID=1;URLAUTH=authuser:internal:abc", True)


def test_catenate_form_still_refuses_urlauth_rfc4469_s3():
    with pytest.raises(BadUrl):
        parse_message_url(FULL)
    assert parse_message_url("/INBOX/;UID=5").uid == 5


def test_without_token_keeps_the_rump_only():
    assert without_token(FULL) == FULL[: FULL.index(":INTERNAL")] + ":…"
    assert without_token("/INBOX/;UID=5") == "/INBOX/;UID=5"


@given(st.text(max_size=200))
def test_any_text_parses_or_is_badurl(text):
    for candidate in (text, "imap://a%40x@h/" + text, "/INBOX/;UID=1;URLAUTH=" + text):
        try:
            parse_message_url(candidate, urlauth=True)
        except BadUrl:
            pass
