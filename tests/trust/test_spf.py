"""SPF (RFC 7208) through the real twisted.names client against the loopback stub DNS."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.trust import spf
from tests.trust.trust_support import on_reactor


def check(lookup, ip, mail_from, helo="client.example.net"):
    return on_reactor(spf.check_mail_from, lookup, ip, mail_from, helo)


# --- results (§2.6) --------------------------------------------------------------------------


def test_pass_by_ip4(zone, lookup):
    zone.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
    r = check(lookup, "192.0.2.10", "alice@example.org")
    assert r.result == "pass"
    assert r.domain == "example.org"


def test_fail_by_dash_all(zone, lookup):
    zone.txt("example.org", "v=spf1 ip4:192.0.2.0/24 -all")
    assert check(lookup, "198.51.100.1", "alice@example.org").result == "fail"


def test_softfail_and_neutral(zone, lookup):
    zone.txt("soft.example", "v=spf1 ~all")
    zone.txt("neutral.example", "v=spf1 ?all")
    zone.txt("nomatch.example", "v=spf1 ip4:192.0.2.1")
    assert check(lookup, "198.51.100.1", "a@soft.example").result == "softfail"
    assert check(lookup, "198.51.100.1", "a@neutral.example").result == "neutral"
    # §4.7: no mechanism matched and no redirect: neutral.
    assert check(lookup, "198.51.100.1", "a@nomatch.example").result == "neutral"


def test_none_without_record_or_domain(zone, lookup):
    zone.txt("plain.example", "some other text")
    assert check(lookup, "192.0.2.1", "a@plain.example").result == "none"
    assert check(lookup, "192.0.2.1", "a@nxdomain.example").result == "none"
    # §4.3: a single-label or malformed domain is "none" without a lookup.
    assert check(lookup, "192.0.2.1", "a@localhost").result == "none"


def test_temperror_on_servfail(zone, lookup):
    zone.servfail("broken.example")
    r = check(lookup, "192.0.2.1", "a@broken.example")
    assert r.result == "temperror"


def test_temperror_on_timeout(zone, lookup):
    zone.silent("slow.example")
    assert check(lookup, "192.0.2.1", "a@slow.example").result == "temperror"


def test_permerror_on_syntax_and_two_records(zone, lookup):
    zone.txt("bad.example", "v=spf1 ip4:192.0.2.300 -all")
    zone.txt("two.example", "v=spf1 -all", "v=spf1 +all")
    zone.txt("unknown.example", "v=spf1 foo:bar -all")
    assert check(lookup, "192.0.2.1", "a@bad.example").result == "permerror"
    assert check(lookup, "192.0.2.1", "a@two.example").result == "permerror"
    assert check(lookup, "192.0.2.1", "a@unknown.example").result == "permerror"


def test_version_is_case_insensitive_and_spf2_ignored(zone, lookup):
    zone.txt("case.example", "V=SPF1 +all", "spf2.0/pra -all")
    assert check(lookup, "192.0.2.1", "a@case.example").result == "pass"


def test_long_record_split_in_character_strings(zone, lookup):
    ips = " ".join(f"ip4:198.51.100.{i}" for i in range(1, 40))
    zone.txt("long.example", f"v=spf1 {ips} ip4:192.0.2.7 -all")  # > 255 octets
    assert check(lookup, "192.0.2.7", "a@long.example").result == "pass"


# --- mechanisms (§5) -------------------------------------------------------------------------


def test_include_pass_and_include_fail_does_not_match(zone, lookup):
    zone.txt("example.org", "v=spf1 include:_spf.provider.example include:other.example -all")
    zone.txt("_spf.provider.example", "v=spf1 ip4:203.0.113.0/24 -all")
    zone.txt("other.example", "v=spf1 ip4:198.51.100.5 -all")
    assert check(lookup, "203.0.113.9", "a@example.org").result == "pass"
    assert check(lookup, "198.51.100.5", "a@example.org").result == "pass"
    # The included record's -all is "not a match", so the outer -all decides.
    assert check(lookup, "192.0.2.1", "a@example.org").result == "fail"


def test_include_of_domain_without_record_is_permerror(zone, lookup):
    zone.txt("example.org", "v=spf1 include:norecord.example -all")
    zone.a("norecord.example", "192.0.2.1")
    assert check(lookup, "192.0.2.1", "a@example.org").result == "permerror"


def test_include_temperror_propagates(zone, lookup):
    zone.txt("example.org", "v=spf1 include:down.example -all")
    zone.servfail("down.example")
    assert check(lookup, "192.0.2.1", "a@example.org").result == "temperror"


def test_include_loop_is_permerror(zone, lookup):
    zone.txt("loop-a.example", "v=spf1 include:loop-b.example -all")
    zone.txt("loop-b.example", "v=spf1 include:loop-a.example -all")
    r = check(lookup, "192.0.2.1", "a@loop-a.example")
    assert r.result == "permerror"
    assert "10" in r.reason


def test_ten_dns_terms_allowed_eleventh_is_permerror(zone, lookup):
    for i in range(11):
        zone.a(f"h{i}.example", "198.51.100.1")
    ten = " ".join(f"a:h{i}.example" for i in range(10))
    zone.txt("ten.example", f"v=spf1 {ten} ip4:192.0.2.1 -all")
    zone.txt("eleven.example", f"v=spf1 {ten} a:h10.example ip4:192.0.2.1 -all")
    assert check(lookup, "192.0.2.1", "a@ten.example").result == "pass"
    assert check(lookup, "192.0.2.1", "a@eleven.example").result == "permerror"


def test_ip_mechanisms_do_not_count_towards_the_limit(zone, lookup):
    ips = " ".join(f"ip4:198.51.100.{i}" for i in range(1, 20))
    zone.txt("ips.example", f"v=spf1 {ips} ip4:192.0.2.1 -all")
    assert check(lookup, "192.0.2.1", "a@ips.example").result == "pass"


def test_third_void_lookup_is_permerror(zone, lookup):
    zone.txt("two-void.example", "v=spf1 a:v1.example a:v2.example ip4:192.0.2.1 -all")
    zone.txt("three-void.example", "v=spf1 a:v1.example a:v2.example a:v3.example ip4:192.0.2.1")
    assert check(lookup, "192.0.2.1", "a@two-void.example").result == "pass"
    r = check(lookup, "192.0.2.1", "a@three-void.example")
    assert r.result == "permerror"
    assert "void" in r.reason


def test_a_and_mx_with_cidr(zone, lookup):
    zone.txt("example.org", "v=spf1 a/24 mx:mx.example.org//64 -all")
    zone.a("example.org", "192.0.2.1")
    zone.mx("mx.example.org", (10, "mail1.example.org"), (20, "mail2.example.org"))
    zone.aaaa("mail2.example.org", "2001:db8:1::1")
    assert check(lookup, "192.0.2.200", "a@example.org").result == "pass"  # a/24
    assert check(lookup, "2001:db8:1::ffff", "a@example.org").result == "pass"  # mx//64
    assert check(lookup, "2001:db8:2::1", "a@example.org").result == "fail"


def test_mx_with_more_than_ten_names_is_permerror(zone, lookup):
    zone.txt("bigmx.example", "v=spf1 mx -all")
    zone.mx("bigmx.example", *[(i, f"mx{i}.bigmx.example") for i in range(11)])
    assert check(lookup, "192.0.2.1", "a@bigmx.example").result == "permerror"


def test_ipv6_client_and_ipv4_mapped(zone, lookup):
    zone.txt("v6.example", "v=spf1 ip6:2001:db8::/32 ip4:192.0.2.0/24 -all")
    assert check(lookup, "2001:db8::25", "a@v6.example").result == "pass"
    assert check(lookup, "2001:db9::25", "a@v6.example").result == "fail"
    assert check(lookup, "::ffff:192.0.2.5", "a@v6.example").result == "pass"


def test_exists_with_macros(zone, lookup):
    zone.txt("example.org", "v=spf1 exists:%{ir}.%{l1r+}._spf.%{d} -all")
    zone.a("1.2.0.192.alice._spf.example.org", "127.0.0.2")
    assert check(lookup, "192.0.2.1", "alice@example.org").result == "pass"
    assert check(lookup, "192.0.2.1", "bob@example.org").result == "fail"


def test_redirect(zone, lookup):
    zone.txt("example.org", "v=spf1 redirect=_spf.example.net")
    zone.txt("_spf.example.net", "v=spf1 ip4:192.0.2.0/24 -all")
    zone.txt("dangling.example", "v=spf1 redirect=norecord.example")
    assert check(lookup, "192.0.2.9", "a@example.org").result == "pass"
    assert check(lookup, "198.51.100.9", "a@example.org").result == "fail"
    # §6.1: a redirect target without an SPF record is permerror.
    assert check(lookup, "192.0.2.9", "a@dangling.example").result == "permerror"


def test_redirect_ignored_when_all_present(zone, lookup):
    zone.txt("example.org", "v=spf1 -all redirect=_spf.example.net")
    zone.txt("_spf.example.net", "v=spf1 +all")
    assert check(lookup, "192.0.2.9", "a@example.org").result == "fail"


def test_ptr_minimal(zone, lookup):
    zone.txt("example.org", "v=spf1 ptr -all")
    zone.ptr("5.2.0.192.in-addr.arpa", "out.example.org")
    zone.a("out.example.org", "192.0.2.5")
    zone.ptr("6.2.0.192.in-addr.arpa", "spoof.example.org")  # forward lookup does not match
    zone.a("spoof.example.org", "198.51.100.6")
    assert check(lookup, "192.0.2.5", "a@example.org").result == "pass"
    assert check(lookup, "192.0.2.6", "a@example.org").result == "fail"


def test_helo_identity_and_null_sender(zone, lookup):
    zone.txt("out.example.net", "v=spf1 ip4:192.0.2.25 -all")
    assert on_reactor(spf.check_helo, lookup, "192.0.2.25", "out.example.net").result == "pass"
    assert on_reactor(spf.check_helo, lookup, "192.0.2.26", "out.example.net").result == "fail"
    # §2.4: a null reverse-path is checked as postmaster@<HELO>.
    assert check(lookup, "192.0.2.26", "", helo="out.example.net").result == "fail"
    assert on_reactor(spf.check_helo, lookup, "192.0.2.25", "[192.0.2.25]").result == "none"


# --- parsing and macros, pure ----------------------------------------------------------------

CTX = spf.MacroContext(
    sender="strong-bad@email.example.com",
    domain="email.example.com",
    ip=ipaddress.ip_address("192.0.2.3"),
    helo="mx.example.org",
)


@pytest.mark.parametrize(
    "macro,expanded",
    [
        # RFC 7208 §7.4 examples.
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%%%_%-", "% %20"),
        ("%{S}", "strong-bad%40email.example.com"),
    ],
)
def test_macro_examples_of_rfc7208(macro, expanded):
    assert spf.expand(macro, CTX) == expanded


def test_macro_ipv6_nibbles():
    ctx = spf.MacroContext(CTX.sender, CTX.domain, ipaddress.ip_address("2001:db8::cb01"), "h")
    assert spf.expand("%{ir}.%{v}._spf.%{d2}", ctx) == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


@pytest.mark.parametrize("bad", ["%{x}", "%{d0}", "%{c}", "50%", "%{d"])
def test_bad_macros_are_permerror(bad):
    with pytest.raises(spf.SpfPermError):
        spf.expand(bad, CTX)


@pytest.mark.parametrize(
    "record",
    [
        "v=spf1 a:1.2.3.4 -all",  # numeric toplabel is not a domain-end
        "v=spf1 ip4:192.0.2.0/33",
        "v=spf1 ip4:192.0.2.0/024",
        "v=spf1 ip6:2001:db8::/129",
        "v=spf1 a/33",
        "v=spf1 include",
        "v=spf1 redirect=a.example redirect=b.example",
        "v=spf1 -all/24",
        "v=spf1 exists:",
    ],
)
def test_record_syntax_errors(record):
    with pytest.raises(spf.SpfPermError):
        spf.parse_record(record)


def test_domain_end_toplabel_rules():
    spf.parse_record("v=spf1 a:host.123-4 include:x.example. exists:%{i}.%{d} -all")


def test_record_parse_shape():
    r = spf.parse_record("v=spf1  +mx/26//64 ~include:_spf.example.com exp=x.%{d} foo=bar ?all")
    assert [(m.qualifier, m.name) for m in r.mechanisms] == [
        ("+", "mx"),
        ("~", "include"),
        ("?", "all"),
    ]
    assert r.mechanisms[0].cidr4 == 26 and r.mechanisms[0].cidr6 == 64
    assert r.exp == "x.%{d}" and r.redirect is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
def test_parser_only_raises_permerror(text):
    try:
        spf.parse_record("v=spf1 " + text)
    except spf.SpfPermError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="%{}slodiphvcrt0123456789r.-+,/_=abc", max_size=30))
def test_macro_expansion_only_raises_permerror(text):
    try:
        out = spf.expand(text, CTX)
    except spf.SpfPermError:
        return
    # "%%" is a literal percent, so "%%{" legitimately expands to "%{" (RFC 7208 §7.1).
    assert "%{" not in out or "%%" in text
