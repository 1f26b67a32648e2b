"""Text the junk filter reads from a message costs work in proportion to its size: each case
here cost the square of its length (a pattern tried again from each character of a run) and
is held to a few seconds, with its result checked."""

from __future__ import annotations

from mailsuite.junk.filter import passed_domains
from mailsuite.junk.tokens import message_tokens
from tests.cpu_bound import cpu_seconds


def test_address_tokens_of_long_runs_without_a_domain():
    # 32 To: fields of 1,998 local-part characters and an "@" with no domain (the filter reads
    # 2,000 characters of a value): each character of a run started a try that read on to the
    # "@" (0.2 s a message; here 60 messages).
    header = (b"To: " + b"a" * 1998 + b"@\r\n") * 32
    raw = header + b"Subject: hello\r\n\r\nbody text\r\n"
    with cpu_seconds(5):
        for _ in range(60):
            tokens = message_tokens(raw)
    assert not any(t.startswith("to:@") for t in tokens)
    assert "subject:hello" in tokens


def test_address_tokens_are_the_domains_after_each_local_part():
    raw = b"To: a@b.example, c+d@e.example.org; x@y@z.example\r\n\r\n"
    tokens = message_tokens(raw)
    assert {t for t in tokens if t.startswith("to:@")} == {
        "to:@b.example",
        "to:@e.example.org",
        "to:@z.example",
    }


def test_passed_domains_of_a_signature_domain_full_of_dkim_pass():
    # A DKIM d= of ".dkim=pass" repeated, copied into our Authentication-Results: each one
    # was a start that read on to the end of the clause (3 s at 8,000).
    value = b'mx.test; dkim=fail header.d="' + b".dkim=pass" * 60_000 + b'"; spf=none'
    with cpu_seconds(5):
        assert passed_domains(value) == []


def test_passed_domains_are_the_properties_after_each_pass():
    value = (
        b"mx.test; spf=pass smtp.mailfrom=u@a.example; dkim=pass header.d=b.example"
        b" header.s=s; dkim=fail header.d=c.example; DKIM=Pass (ok) header.d=d.example"
    )
    assert passed_domains(value) == [b"a.example", b"b.example", b"d.example"]
