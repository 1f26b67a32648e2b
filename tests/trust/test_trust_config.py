"""The [trust] config section: defaults and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsuite.config import ConfigError, config_from_dict
from mailsuite.trust.resolver import parse_resolver_address, resolver_servers


def load(**trust):
    return config_from_dict({"trust": trust}, base=Path("/tmp"))


def test_defaults_match_the_documented_policy():
    t = load().trust
    assert (t.dmarc_reject, t.dmarc_quarantine, t.spf_fail, t.spf_softfail) == (
        "reject",
        "junk",
        "reject",
        "accept",
    )
    assert t.dns_failure == "tempfail" and t.inbound_checks and t.dkim_sign


@pytest.mark.parametrize(
    "key,value",
    [
        ("dmarc_reject", "drop"),
        ("spf_fail", "bounce"),
        ("dns_failure", "reject"),
        ("dmarc_policy", "strict"),
        ("mta_sts_mode", "on"),
        ("mta_sts_max_age", 31557601),
    ],
)
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        load(**{key: value})
    assert e.value.key == f"trust.{key}"


def test_resolvers_fall_back_to_relay():
    cfg = config_from_dict({"relay": {"resolvers": ["192.0.2.53"]}}, base=Path("/tmp"))
    assert resolver_servers(cfg) == [("192.0.2.53", 53)]
    cfg = config_from_dict(
        {"relay": {"resolvers": ["192.0.2.53"]}, "trust": {"resolvers": ["[::1]:5353"]}},
        base=Path("/tmp"),
    )
    assert resolver_servers(cfg) == [("::1", 5353)]


@pytest.mark.parametrize(
    "text,parsed",
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5300", ("127.0.0.1", 5300)),
        ("::1", ("::1", 53)),
        ("[2001:db8::1]:53", ("2001:db8::1", 53)),
    ],
)
def test_resolver_address_forms(text, parsed):
    assert parse_resolver_address(text) == parsed


@pytest.mark.parametrize("bad", ["dns.example", "127.0.0.1:99999", "[::1]:x"])
def test_bad_resolver_names_the_key(bad):
    with pytest.raises(ConfigError) as e:
        resolver_servers(load(resolvers=[bad]))
    assert e.value.key == "trust.resolvers"


def test_loopback_skipped_by_default_and_bad_network_named():
    assert load().trust.skip_networks == ["127.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError) as e:
        load(skip_networks=["10.0.0.0/8", "not-a-net"])
    assert e.value.key == "trust.skip_networks[1]"
