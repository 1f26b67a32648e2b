"""MX routing through twisted.names against the stub DNS server on loopback."""

import pytest

from mailsuite.relay.mx import Destination, MxResolver, parse_resolver
from mailsuite.relay.reply import DeliveryFailure
from tests.relay.relay_support import in_reactor, relay_config


def resolve(config, domain):
    return in_reactor(MxResolver(config).destinations, domain)


def test_mx_in_preference_order_with_a_and_aaaa(stub_dns, tmp_path):
    dns_, addr = stub_dns
    dns_.add_mx("remote.test", (20, "mx2.remote.test"), (10, "mx1.remote.test"))
    dns_.add_a("mx1.remote.test", "127.0.0.1")
    dns_.add_aaaa("mx1.remote.test", "::1")
    dns_.add_a("mx2.remote.test", "127.0.0.2")
    cfg = relay_config(tmp_path, resolvers=[addr], mx_port=2525)
    assert resolve(cfg, "Remote.TEST") == [
        Destination("mx1.remote.test", "127.0.0.1", 2525),
        Destination("mx1.remote.test", "::1", 2525),
        Destination("mx2.remote.test", "127.0.0.2", 2525),
    ]


def test_no_mx_falls_back_to_domain_address(stub_dns, tmp_path):
    # RFC 5321 §5.1: implicit MX.
    dns_, addr = stub_dns
    dns_.add_a("bare.test", "127.0.0.3")
    cfg = relay_config(tmp_path, resolvers=[addr])
    assert resolve(cfg, "bare.test") == [Destination("bare.test", "127.0.0.3", 25)]


def test_null_mx_is_permanent_5_1_10(stub_dns, tmp_path):
    dns_, addr = stub_dns
    dns_.add_mx("nomail.test", (0, ""))
    with pytest.raises(DeliveryFailure) as ei:
        resolve(relay_config(tmp_path, resolvers=[addr]), "nomail.test")
    assert ei.value.status == "5.1.10" and ei.value.permanent


def test_nxdomain_is_permanent_and_servfail_temporary(stub_dns, tmp_path):
    dns_, addr = stub_dns
    cfg = relay_config(tmp_path, resolvers=[addr])
    with pytest.raises(DeliveryFailure) as ei:
        resolve(cfg, "nowhere.test")
    assert ei.value.status == "5.1.2"
    dns_.servfail.add("broken.test")
    with pytest.raises(DeliveryFailure) as ei:
        resolve(cfg, "broken.test")
    assert not ei.value.permanent


def test_mx_without_addresses_is_skipped(stub_dns, tmp_path):
    dns_, addr = stub_dns
    dns_.add_mx("half.test", (5, "gone.half.test"), (10, "ok.half.test"))
    dns_.add_a("ok.half.test", "127.0.0.4")
    cfg = relay_config(tmp_path, resolvers=[addr])
    assert resolve(cfg, "half.test") == [Destination("ok.half.test", "127.0.0.4", 25)]


def test_static_route_overrides_dns(stub_dns, tmp_path):
    dns_, addr = stub_dns
    dns_.add_mx("routed.test", (10, "mx.routed.test"))
    cfg = relay_config(tmp_path, resolvers=[addr], routes={"routed.test": "127.0.0.9:2526"})
    assert resolve(cfg, "routed.test") == [Destination("127.0.0.9", "127.0.0.9", 2526)]


def test_parse_resolver():
    assert parse_resolver("10.0.0.1") == ("10.0.0.1", 53)
    assert parse_resolver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_resolver("[::1]:5353") == ("::1", 5353)
    assert parse_resolver("::1") == ("::1", 53)
