"""The inbound verdict (SPF + DKIM + DMARC, RFC 7489) through check_inbound with real Services,
the real twisted.names client and the loopback stub DNS."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from mailsuite.services import Services
from mailsuite.trust import authresults, dkim
from mailsuite.trust.inbound import check_inbound
from tests.trust.trust_support import HOSTNAME, on_reactor, trust_config

CLIENT = "192.0.2.25"


def message(from_addr: str, extra: bytes = b"") -> bytes:
    return (
        f"From: Sender <{from_addr}>\r\n".encode()
        + b"To: alice@example.test\r\n"
        + b"Subject: hello\r\n"
        + b"Message-ID: <m1@sender>\r\n"
        + extra
        + b"\r\nHello Alice.\r\n"
    )


@pytest.fixture
def make_services(tmp_path, stub_dns_server, zone):
    def make(**trust):
        root = tmp_path / f"srv{len(list(tmp_path.iterdir()))}"
        cfg = trust_config(root, stub_dns_server.address, **trust)
        return Services.create(cfg, with_tls=False)

    return make


@pytest.fixture
def services(make_services):
    return make_services()


@pytest.fixture
def sender(tmp_path, stub_dns_server, zone):
    """A remote sending domain's DKIM signer: sender.sign(domain, data) with published keys."""
    cfg = trust_config(tmp_path / "sender", stub_dns_server.address)

    def sign(domain: str, data: bytes) -> bytes:
        key = dkim.generate_key(cfg, domain, "s1", "ed25519")
        zone.txt(key.dns_name, key.dns_value)
        return dkim.sign(SimpleNamespace(config=cfg), domain, data)

    return SimpleNamespace(sign=sign)


def run(services, data, mail_from, helo="out.sender.example", ip=CLIENT):
    return on_reactor(check_inbound, services, ip, helo, mail_from, data)


def header_text(verdict) -> str:
    return verdict.header.decode()


# --- DMARC -----------------------------------------------------------------------------------


def test_dmarc_pass_via_spf_relaxed_alignment(services, zone):
    zone.txt("mail.example.org", f"v=spf1 ip4:{CLIENT} -all")
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    v = run(services, message("a@example.org"), "bounce@mail.example.org")
    assert v.action == "accept"
    text = header_text(v)
    assert text.startswith(f"Authentication-Results: {HOSTNAME};")
    assert "spf=pass smtp.mailfrom=bounce@mail.example.org" in text
    assert "dmarc=pass" in text and "header.from=example.org" in text


def test_dmarc_strict_spf_alignment_rejects(services, zone):
    zone.txt("mail.example.org", f"v=spf1 ip4:{CLIENT} -all")
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject; aspf=s")
    v = run(services, message("a@example.org"), "bounce@mail.example.org")
    assert (v.action, v.code, v.enhanced) == ("reject", 550, "5.7.1")
    assert "example.org" in v.text
    assert "dmarc=fail (p=reject dis=reject)" in header_text(v)


def test_dmarc_pass_via_dkim(services, sender, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    data = sender.sign("example.org", message("a@example.org"))
    v = run(services, data, "someone@unrelated.example")  # SPF none
    assert v.action == "accept"
    text = header_text(v)
    assert "dkim=pass header.d=example.org header.s=s1 header.a=ed25519-sha256" in text
    assert "spf=none" in text and "dmarc=pass" in text


@pytest.mark.parametrize("adkim,action", [("r", "accept"), ("s", "reject")])
def test_dmarc_dkim_relaxed_vs_strict(services, sender, zone, adkim, action):
    zone.txt("_dmarc.example.org", f"v=DMARC1; p=reject; adkim={adkim}")
    # Signed by the organizational domain, From: a subdomain of it.
    data = sender.sign("example.org", message("news@news.example.org"))
    v = run(services, data, "someone@unrelated.example")
    assert v.action == action


def test_dmarc_quarantine_goes_to_junk(services, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=quarantine")
    v = run(services, message("a@example.org"), "someone@unrelated.example")
    assert v.action == "junk"
    assert "dmarc=fail (p=quarantine dis=quarantine)" in header_text(v)


def test_dmarc_none_policy_only_records(services, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=none")
    v = run(services, message("a@example.org"), "someone@unrelated.example")
    assert v.action == "accept"
    assert "dmarc=fail (p=none dis=none)" in header_text(v)


@pytest.mark.parametrize(
    "from_addr,record,action",
    [
        ("a@sub.example.net", "v=DMARC1; p=reject; sp=quarantine", "junk"),
        ("a@sub.example.net", "v=DMARC1; p=reject; sp=none", "accept"),
        ("a@sub.example.net", "v=DMARC1; p=reject", "reject"),  # no sp=: p= applies
        ("a@example.net", "v=DMARC1; p=reject; sp=none", "reject"),
    ],
)
def test_dmarc_subdomain_policy(services, zone, from_addr, record, action):
    zone.txt("_dmarc.example.net", record)
    v = run(services, message(from_addr), "someone@unrelated.example")
    assert v.action == action


def test_dmarc_record_on_the_subdomain_itself_wins(services, zone):
    zone.txt("_dmarc.example.net", "v=DMARC1; p=none")
    zone.txt("_dmarc.shop.example.net", "v=DMARC1; p=reject")
    v = run(services, message("a@shop.example.net"), "someone@unrelated.example")
    assert v.action == "reject"


def test_dmarc_multi_part_public_suffix(services, zone):
    # example.co.uk is the organizational domain of mail.example.co.uk (not co.uk).
    zone.txt("_dmarc.example.co.uk", "v=DMARC1; p=reject")
    zone.txt("mail.example.co.uk", f"v=spf1 ip4:{CLIENT} -all")
    assert run(services, message("a@example.co.uk"), "b@mail.example.co.uk").action == "accept"
    assert run(services, message("a@example.co.uk"), "b@other.co.uk").action == "reject"


def test_dmarc_pct_zero_downgrades_reject_to_quarantine(services, zone):
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject; pct=0")
    v = run(services, message("a@example.org"), "someone@unrelated.example")
    assert v.action == "junk"


def test_dmarc_dns_failure_is_tempfail(services, zone):
    zone.servfail("_dmarc.example.org")
    v = run(services, message("a@example.org"), "someone@unrelated.example")
    assert (v.action, v.code, v.enhanced) == ("tempfail", 451, "4.4.3")


def test_dmarc_policy_configurable(make_services, zone):
    svc = make_services(dmarc_reject="junk", dmarc_quarantine="accept")
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    zone.txt("_dmarc.example.net", "v=DMARC1; p=quarantine")
    assert run(svc, message("a@example.org"), "x@unrelated.example").action == "junk"
    assert run(svc, message("a@example.net"), "x@unrelated.example").action == "accept"


# --- SPF policy ------------------------------------------------------------------------------


def test_spf_fail_without_dkim_is_refused(services, zone):
    zone.txt("example.org", "v=spf1 ip4:198.51.100.0/24 -all")
    v = run(services, message("a@example.org"), "a@example.org")
    assert (v.action, v.code, v.enhanced) == ("reject", 550, "5.7.23")


def test_spf_fail_with_dkim_pass_is_accepted(services, sender, zone):
    zone.txt("example.org", "v=spf1 ip4:198.51.100.0/24 -all")
    data = sender.sign("example.org", message("a@example.org"))
    v = run(services, data, "a@example.org")
    assert v.action == "accept"
    assert "spf=fail" in header_text(v) and "dkim=pass" in header_text(v)


def test_spf_softfail_accepted_by_default(services, zone):
    zone.txt("example.org", "v=spf1 ~all")
    assert run(services, message("a@example.org"), "a@example.org").action == "accept"


def test_helo_spf_fail_is_refused(services, zone):
    zone.txt("out.sender.example", "v=spf1 ip4:198.51.100.1 -all")
    v = run(services, message("a@example.org"), "a@example.org")
    assert v.action == "reject"
    assert "HELO" in v.text


def test_spf_temperror_is_tempfail_unless_configured(services, make_services, zone):
    zone.servfail("example.org")
    v = run(services, message("a@elsewhere.example"), "a@example.org")
    assert (v.action, v.code) == ("tempfail", 451)
    assert "spf=temperror" in header_text(v)
    relaxed = make_services(dns_failure="accept")
    assert run(relaxed, message("a@elsewhere.example"), "a@example.org").action == "accept"


def test_null_sender_uses_helo_for_spf_and_dmarc(services, zone):
    zone.txt("out.sender.example", f"v=spf1 ip4:{CLIENT} -all")
    zone.txt("_dmarc.sender.example", "v=DMARC1; p=reject")
    v = run(services, message("mailer-daemon@sender.example"), "")
    assert v.action == "accept"
    assert "spf=pass smtp.helo=out.sender.example" in header_text(v)


def test_checks_disabled(make_services, zone):
    svc = make_services(inbound_checks=False)
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    v = run(svc, message("a@example.org"), "x@unrelated.example")
    assert v.action == "accept" and v.header == b""


# --- Authentication-Results ------------------------------------------------------------------


FORGED = (
    b"Authentication-Results: mail.example.test; dkim=pass header.d=bank.example\r\n"
    b"Authentication-Results: (sneaky)\r\n MAIL.Example.Test; spf=pass\r\n"
    b'Authentication-Results: "mail.example.test"; dmarc=pass\r\n'
    b"Authentication-Results: mx.other.example; spf=fail\r\n"
)


def test_forged_authentication_results_removed(services, zone):
    data = message("a@example.org", FORGED) + b"Authentication-Results: mail.example.test\r\n"
    v = run(services, data, "x@unrelated.example")
    out = v.apply(data)
    head, _, body = out.partition(b"\r\n\r\n")
    fields = [line for line in head.split(b"\r\n") if line.lower().startswith(b"authentication")]
    assert len(fields) == 2
    assert fields[0] == v.header.split(b"\r\n")[0]  # ours, on top
    assert fields[1] == b"Authentication-Results: mx.other.example; spf=fail"
    assert b"sneaky" not in head and b"bank.example" not in head
    assert body.endswith(b"Authentication-Results: mail.example.test\r\n")  # body untouched


def test_forged_removed_even_with_checks_disabled(make_services, zone):
    svc = make_services(inbound_checks=False)
    data = message("a@example.org", FORGED)
    out = run(svc, data, "x@unrelated.example").apply(data)
    assert out.count(b"Authentication-Results") == 1


def test_our_header_is_parsable(services, zone):
    v = run(services, message("a@example.org"), "x@unrelated.example")
    name, _, value = v.header.partition(b":")
    assert name == b"Authentication-Results"
    assert authresults.authserv_id(value) == HOSTNAME
    assert v.header.endswith(b"\r\n")
    assert all(line.startswith(b"\t") for line in v.header.split(b"\r\n")[1:-1])


def test_skip_networks_are_not_checked(make_services, zone):
    svc = make_services(skip_networks=["192.0.2.0/24", "2001:db8::/32"])
    zone.txt("_dmarc.example.org", "v=DMARC1; p=reject")
    for ip in ("192.0.2.25", "2001:db8::1", "::ffff:192.0.2.9"):
        v = run(svc, message("a@example.org"), "x@unrelated.example", ip=ip)
        assert v.action == "accept" and v.header == b""
    assert run(svc, message("a@example.org"), "x@unrelated.example", ip="198.51.100.1").action == (
        "reject"
    )
