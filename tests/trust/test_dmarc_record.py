"""DMARC record parsing, alignment and organizational domains (RFC 7489 §3, §6), pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.trust import dmarc
from mailsuite.trust.orgdomain import organizational_domain


def test_parse_full_record():
    r = dmarc.parse_record("v=DMARC1; p=Reject; sp=quarantine; adkim=s; aspf=r; pct=50; rua=x")
    assert r == dmarc.DmarcRecord(p="reject", sp="quarantine", adkim="s", aspf="r", pct=50)


def test_parse_defaults_and_tolerance():
    r = dmarc.parse_record("v=DMARC1;p=none")
    assert (r.p, r.sp, r.adkim, r.aspf, r.pct) == ("none", None, "r", "r", 100)
    # §6.6.3 step 6: no usable p= but a rua= means p=none.
    assert dmarc.parse_record("v=DMARC1; rua=mailto:x@example.org").p == "none"
    # An invalid sp= is ignored, unknown tags too.
    assert dmarc.parse_record("v=DMARC1; p=reject; sp=bogus; foo=bar").sp is None


@pytest.mark.parametrize("text", ["p=reject; v=DMARC1", "v=DMARC1; p=bogus", "v=DMARC2; p=none"])
def test_parse_rejects(text):
    with pytest.raises(dmarc.DmarcRecordError):
        dmarc.parse_record(text)


def test_is_dmarc_record():
    assert dmarc.is_dmarc_record(b"v=DMARC1; p=none")
    assert dmarc.is_dmarc_record(b"v = DMARC1;p=none")
    assert dmarc.is_dmarc_record(b"V=DMARC1; p=none")
    assert not dmarc.is_dmarc_record(b"v=dmarc1; p=none")
    assert not dmarc.is_dmarc_record(b"v=spf1 -all")


@pytest.mark.parametrize(
    "domain,org",
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com.", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("example.co.uk", "example.co.uk"),
        ("shop.example.com.au", "example.com.au"),
        ("x.example.co.jp", "example.co.jp"),
        ("com", "com"),
    ],
)
def test_organizational_domain(domain, org):
    assert organizational_domain(domain) == org


def test_alignment_modes():
    assert dmarc.aligned("mail.example.org", "example.org", "r")
    assert dmarc.aligned("Example.ORG.", "example.org", "s")
    assert not dmarc.aligned("mail.example.org", "example.org", "s")
    assert not dmarc.aligned("example.co.uk", "other.co.uk", "r")
    assert not dmarc.aligned("", "example.org", "r")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_parser_only_raises_record_error(text):
    try:
        r = dmarc.parse_record(text)
    except dmarc.DmarcRecordError:
        return
    assert r.p in dmarc.POLICIES and 0 <= r.pct <= 100
