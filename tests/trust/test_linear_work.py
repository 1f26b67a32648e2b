"""Hostile header fields and DNS records cost work in proportion to their size: each case
here took minutes of CPU time (a field copied again for each of its lines, a pattern tried
again from each character) and is held to a few seconds, with its result checked."""

from __future__ import annotations

import pytest

from mailsuite.trust import authresults, dnsrecords, verify
from mailsuite.trust.spf import SpfPermError, parse_record
from tests.cpu_bound import cpu_seconds

LINES = 300_000


def test_a_forged_authentication_results_folded_over_many_lines_is_stripped():
    data = (
        b"Received: x\r\nAuthentication-Results: mx.test; spf=pass\r\n"
        + b" (more)\r\n" * LINES
        + b"From: a@example.test\r\n\r\nbody\r\n"
    )
    with cpu_seconds(5):
        kept, removed = authresults.strip_forged(data, "mx.test")
    assert (kept, removed) == (b"Received: x\r\nFrom: a@example.test\r\n\r\nbody\r\n", 1)


def test_a_dkim_signature_folded_over_many_lines_keeps_its_tags():
    data = (
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=sel; h=from; bh=x; b=\r\n"
        + b" AAAA\r\n" * LINES
        + b"From: a@example.test\r\n\r\nbody\r\n"
    )
    with cpu_seconds(5):
        (sig,) = verify.signatures(data)
    assert sig.error == "" and sig.tags[b"d"] == b"example.test"
    assert verify._text(sig.tags, b"b") == "A" * 4 * LINES


def test_an_spf_domain_spec_with_a_long_last_label_that_is_not_one():
    # "[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*" tried every split of the label: 0.07 s at 4,000
    # characters, four times that at each doubling.
    with cpu_seconds(5), pytest.raises(SpfPermError):
        parse_record("v=spf1 include:a." + "a" * 200_000 + "!")
    assert parse_record("v=spf1 include:a." + "a" * 200_000 + " -all").mechanisms


def test_a_dns_record_with_a_long_run_of_blanks_compares_normalised():
    record = "v=DMARC1" + " " * 300_000 + "x ;  p=none ; "
    with cpu_seconds(5):
        assert dnsrecords._norm(record) == "v=dmarc1" + " " * 300_000 + "x;p=none"
