"""A URL's token is cut off for the log in time proportional to the URL's length: the pattern
was tried from every ";URLAUTH=" in it, each read on to the end."""

from __future__ import annotations

from mailsuite.urlauth import without_token
from tests.cpu_bound import cpu_seconds


def test_a_url_of_many_urlauth_marks():
    url = "imap://a@h/INBOX/;UID=1" + ";URLAUTH=" * 60_000
    with cpu_seconds(5):
        assert without_token(url) == url


def test_the_token_after_the_last_mark_is_cut():
    url = "imap://a@h/INBOX/;UID=1;urlauth=user+a;URLAUTH=submit+b:INTERNAL:0a1B"
    assert without_token(url) == "imap://a@h/INBOX/;UID=1;urlauth=user+a;URLAUTH=submit+b:…"
    assert without_token(url + "g") == url + "g"
    assert (
        without_token("imap://a@h/x/;UID=1;URLAUTH=x:y:z:ff")
        == "imap://a@h/x/;UID=1;URLAUTH=x:y:z:ff"
    )
