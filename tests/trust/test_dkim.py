"""DKIM (RFC 6376, RFC 8463): our keys and signatures, checked by dkimpy over real DNS, and our
verifier's pass/fail/permerror/temperror results."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import dkim as dkimpy
import dns.resolver
import pytest

from mailsuite.trust import dkim, verify
from tests.trust.trust_support import on_reactor

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@example.net>\r\n"
    b"Subject: quarterly figures\r\n"
    b"Date: Sat, 28 Nov 2026 19:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"Received: from somewhere\r\n"
    b"\r\n"
    b"Numbers attached.\r\n"
    b"--\r\nAlice\r\n"
)


@pytest.fixture
def keys(config, zone):
    """An ed25519 and an RSA key for example.test, published in the stub DNS."""
    made = [
        dkim.generate_key(config, "example.test", "ed", "ed25519"),
        dkim.generate_key(config, "example.test", "rsa", "rsa"),
    ]
    for key in made:
        zone.txt(key.dns_name, key.dns_value)
    return made


@pytest.fixture
def dnspython_txt(stub_dns_server):
    """dkimpy's dnsfunc backed by dnspython pointed at the stub server: an independent path."""
    res = dns.resolver.Resolver(configure=False)
    res.nameservers = ["127.0.0.1"]
    res.port = stub_dns_server.port

    def txt(name, timeout=5):
        text = name.decode() if isinstance(name, bytes) else name
        try:
            answer = res.resolve(text, "TXT", lifetime=2)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(answer[0].strings)

    return txt


def sign(config, data=MESSAGE, mail_from_domain="example.test"):
    return dkim.sign(SimpleNamespace(config=config), mail_from_domain, data)


def dkimpy_verify_all(data, dnsfunc) -> list[bool]:
    count = sum(1 for n in dkim.header_names(data) if n == "dkim-signature")
    return [dkimpy.DKIM(data).verify(idx=i, dnsfunc=dnsfunc) for i in range(count)]


# --- keys ------------------------------------------------------------------------------------


def test_keygen_writes_private_key_0600_and_dns_value(config, keys):
    for key in keys:
        key_path, pub_path = dkim.key_paths(config, "example.test", key.selector)
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert pub_path.read_text().strip() == key.dns_value
        assert key.dns_value.startswith(f"v=DKIM1; k={key.key_type}; p=")
    assert key_path.parent == config.data_dir / "dkim" / "example.test"
    # The key's folders are private too, whatever the umask the keys were made under.
    for folder in (key_path.parent, key_path.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_keygen_refuses_to_overwrite(config, keys):
    with pytest.raises(FileExistsError):
        dkim.generate_key(config, "example.test", "ed", "rsa")


def test_rsa_key_is_2048_bits(keys):
    rsa_key = next(k for k in keys if k.key_type == "rsa")
    _pk, size, _k, _t = dkimpy.evaluate_pk(b"x", rsa_key.dns_value.encode())
    assert size == 2048


# --- signing ---------------------------------------------------------------------------------


def test_signed_message_verifies_with_dkimpy_both_algorithms(config, keys, dnspython_txt):
    signed = sign(config)
    assert signed.endswith(MESSAGE)
    assert dkimpy_verify_all(signed, dnspython_txt) == [True, True]
    algos = [dkimpy.util.parse_tag_value(v)[b"a"] for v in _sig_values(signed)]
    assert sorted(algos) == [b"ed25519-sha256", b"rsa-sha256"]


def _sig_values(data):
    return [v for n, v in verify._header_fields(data) if n.lower() == b"dkim-signature"]


def test_signature_is_relaxed_and_signs_from_twice(config, keys):
    tags = dkimpy.util.parse_tag_value(_sig_values(sign(config))[0])
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == b"example.test"
    signed_headers = [h.strip() for h in tags[b"h"].split(b":")]
    assert signed_headers.count(b"from") == 2
    assert {b"to", b"subject", b"date", b"message-id"} <= set(signed_headers)
    assert b"received" not in signed_headers


def test_signature_breaks_after_body_change(config, keys, dnspython_txt):
    signed = sign(config).replace(b"Numbers attached.", b"Numbers changed.")
    for i in range(2):
        with pytest.raises(dkimpy.ValidationError):
            dkimpy.DKIM(signed).verify(idx=i, dnsfunc=dnspython_txt)


def test_signature_breaks_after_from_change(config, keys, dnspython_txt):
    signed = sign(config).replace(b"From: Alice <alice@", b"From: Mallory <alice@")
    assert dkimpy_verify_all(signed, dnspython_txt) == [False, False]


def test_signature_breaks_when_a_second_from_is_added(config, keys, dnspython_txt):
    signed = sign(config)
    head, sep, body = signed.partition(b"\r\n\r\n")
    tampered = head + b"\r\nFrom: ceo@example.test" + sep + body
    assert dkimpy_verify_all(tampered, dnspython_txt) == [False, False]


def test_relaxed_signature_survives_refolding(config, keys, dnspython_txt):
    signed = sign(config).replace(
        b"Subject: quarterly figures", b"Subject:  quarterly\r\n\tfigures"
    )
    assert dkimpy_verify_all(signed, dnspython_txt) == [True, True]


def test_lf_message_signed_with_lf_header(config, keys, dnspython_txt):
    lf = MESSAGE.replace(b"\r\n", b"\n")
    signed = sign(config, lf)
    assert b"\r" not in signed
    assert dkimpy_verify_all(signed, dnspython_txt) == [True, True]


def test_signs_for_from_domain_then_envelope_domain_else_unchanged(config, keys):
    other_from = MESSAGE.replace(b"alice@example.test", b"alice@elsewhere.example")
    # From: has no key, the envelope domain has: sign with the envelope domain.
    assert sign(config, other_from, "example.test").startswith(b"DKIM-Signature:")
    # Neither has a key: unchanged.
    assert sign(config, other_from, "elsewhere.example") == other_from
    # Null sender (bounce) from a local From: domain is still signed.
    assert sign(config, MESSAGE, "").startswith(b"DKIM-Signature:")


def test_configured_selectors_limit_signing(tmp_path, stub_dns_server, zone):
    from tests.trust.trust_support import trust_config

    cfg = trust_config(tmp_path, stub_dns_server.address, dkim_selectors=["rsa"])
    dkim.generate_key(cfg, "example.test", "ed", "ed25519")
    dkim.generate_key(cfg, "example.test", "rsa", "rsa")
    signed = sign(cfg)
    assert len(_sig_values(signed)) == 1
    assert b"a=rsa-sha256" in signed


# --- verification ----------------------------------------------------------------------------


def verify_all(lookup, data):
    return on_reactor(verify.verify_all, lookup, data)


def test_verify_good_signatures(config, keys, lookup):
    results = verify_all(lookup, sign(config))
    assert [(r.result, r.domain) for r in results] == [
        ("pass", "example.test"),
        ("pass", "example.test"),
    ]
    assert {r.selector for r in results} == {"ed", "rsa"}


def test_verify_bad_body_hash(config, keys, lookup):
    signed = sign(config).replace(b"Numbers attached.", b"Numbers changed.")
    results = verify_all(lookup, signed)
    assert [r.result for r in results] == ["fail", "fail"]
    assert all("body hash" in r.reason for r in results)


def test_verify_missing_key(config, lookup, zone):
    dkim.generate_key(config, "example.test", "ed", "ed25519")  # not published
    results = verify_all(lookup, sign(config))
    assert [(r.result, r.reason) for r in results] == [("permerror", "no key record")]


def test_verify_revoked_key(config, lookup, zone):
    key = dkim.generate_key(config, "example.test", "rsa", "rsa")
    zone.txt(key.dns_name, "v=DKIM1; k=rsa; p=")
    results = verify_all(lookup, sign(config))
    assert [(r.result, r.reason) for r in results] == [("permerror", "key revoked")]


def test_verify_wrong_key(config, lookup, zone):
    key = dkim.generate_key(config, "example.test", "ed", "ed25519")
    other = dkim.generate_key(config, "example.net", "ed", "ed25519")
    zone.txt(key.dns_name, other.dns_value)
    results = verify_all(lookup, sign(config))
    assert [r.result for r in results] == ["fail"]


def test_verify_key_lookup_servfail_is_temperror(config, lookup, zone):
    key = dkim.generate_key(config, "example.test", "ed", "ed25519")
    zone.servfail(key.dns_name)
    results = verify_all(lookup, sign(config))
    assert [r.result for r in results] == ["temperror"]


def test_verify_malformed_signature_and_none(lookup, zone):
    bad = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test\r\n" + MESSAGE
    results = verify_all(lookup, bad)
    assert [r.result for r in results] == ["permerror"]
    assert "lacks" in results[0].reason
    assert verify_all(lookup, MESSAGE) == []


def test_header_ends_at_the_first_blank_line_whatever_its_line_ends():
    """A From: line in the body is not a header field, whether the message is stored with LF,
    sent with CRLF, or starts with the blank line (no header at all: RFC 5322 §2.1)."""
    for nl in (b"\n", b"\r\n"):
        data = nl.join([b"Subject: x", b"From: a@one.test", b"", b"From: b@two.test", b""])
        assert dkim.header_names(data) == ["subject", "from"]
        assert dkim.from_domain(data) == "one.test"
        assert dkim.header_names(nl + b"From: b@two.test" + nl + nl + b"text") == []
