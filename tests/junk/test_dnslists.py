"""DNS blocklists, allowlists and domain lists (RFC 5782) against a loopback DNS server."""

from __future__ import annotations

import smtplib

import pytest

from tests.junk.conftest import USER, header, listed_server, send, stored_copy
from tests.junk.corpus import corpus

CLIENT = "1.0.0.127"  # 127.0.0.1 reversed (RFC 5782 §2.1)


def test_client_on_a_rejecting_list_is_refused_at_rcpt_naming_the_list(
    server_factory, stub_dns, zone
):
    zone.a(f"{CLIENT}.bl.test", "127.0.0.2")
    srv = listed_server(server_factory, stub_dns, dnsbl=[{"zone": "bl.test", "action": "reject"}])
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        send(srv, corpus("ham", 1)[0])
    code, text = err.value.recipients[USER]
    assert code == 554
    assert text.startswith(b"5.7.1") and b"bl.test" in text and b"127.0.0.1" in text
    assert srv.messages(USER) == []


def test_only_the_configured_return_codes_count(server_factory, stub_dns, zone):
    zone.a(f"{CLIENT}.bl.test", "127.0.0.4")
    srv = listed_server(
        server_factory,
        stub_dns,
        dnsbl=[
            {"zone": "bl.test", "action": "reject", "codes": ["127.0.0.2", "127.0.0.10-127.0.0.11"]}
        ],
    )
    send(srv, corpus("ham", 1)[0])
    assert len(srv.messages(USER)) == 1


def test_error_answers_are_not_listings(server_factory, stub_dns, zone):
    zone.a(f"{CLIENT}.bl.test", "127.255.255.254")
    srv = listed_server(server_factory, stub_dns, dnsbl=[{"zone": "bl.test", "action": "reject"}])
    send(srv, corpus("ham", 1)[0])
    assert len(srv.messages(USER)) == 1


def test_scoring_lists_add_their_weight_and_name_themselves_in_the_reason(
    server_factory, stub_dns, zone
):
    zone.a(f"{CLIENT}.score.test", "127.0.0.3")
    zone.a(f"{CLIENT}.wl.test", "127.0.9.1")
    srv = listed_server(
        server_factory,
        stub_dns,
        dnsbl=[{"zone": "score.test", "weight": 7.0}],
        dnswl=[{"zone": "wl.test", "weight": -1.5}],
    )
    raw = corpus("ham", 1)[0]
    send(srv, raw)
    stored = stored_copy(srv, raw, "Junk")
    assert stored is not None
    reason = header(stored, b"X-Spam-Reason")
    assert b"DNSBL score.test 127.0.0.3 (+7.0)" in reason
    assert b"DNSWL wl.test 127.0.9.1 (-1.5)" in reason
    assert header(stored, b"X-Spam-Score") == b"5.5"


def test_a_failing_list_never_refuses_mail(server_factory, stub_dns, zone, logs):
    zone.servfail(f"{CLIENT}.bl.test")
    srv = listed_server(server_factory, stub_dns, dnsbl=[{"zone": "bl.test", "action": "reject"}])
    send(srv, corpus("ham", 1)[0])
    assert len(srv.messages(USER)) == 1
    assert logs.matching("counted as not listed")


def test_answers_are_kept_for_their_ttl(server_factory, stub_dns, zone):
    zone.a(f"{CLIENT}.score.test", "127.0.0.3")
    srv = listed_server(server_factory, stub_dns, dnsbl=[{"zone": "score.test", "weight": 1.0}])
    for raw in corpus("ham", 3):
        send(srv, raw)
    asked = [q for q in zone.queries if q[0] == f"{CLIENT}.score.test"]
    assert len(asked) == 1
    assert srv.services.junk.dns_lists.lookups == 1


def test_domain_lists_check_the_sender_domain_and_link_domains(server_factory, stub_dns, zone):
    zone.a("cheap-meds.example.dbl.test", "127.0.1.2")
    zone.a("deals.example.dbl.test", "127.0.1.3")
    srv = listed_server(
        server_factory, stub_dns, domain_lists=[{"zone": "dbl.test", "weight": 2.0}]
    )
    raw = b"From: a@b.example\r\nSubject: hi\r\nMessage-ID: <d1@x>\r\n\r\nsee https://www.cheap-meds.example/buy\r\n"
    send(srv, raw, sender="promo@deals.example")
    reason = header(stored_copy(srv, raw), b"X-Spam-Reason")
    assert b"domain list dbl.test: cheap-meds.example (+2.0)" in reason
    assert b"domain list dbl.test: deals.example (+2.0)" in reason


def test_skip_networks_clients_are_not_looked_up(server_factory, stub_dns, zone):
    zone.a(f"{CLIENT}.bl.test", "127.0.0.2")
    srv = server_factory(
        listen={"pop3": [], "pop3s": [], "imap": [], "imaps": [], "http": []},
        trust={"resolvers": [stub_dns.address], "inbound_checks": False},
        junk={"dnsbl": [{"zone": "bl.test", "action": "reject"}]},
    )
    srv.add_user(USER)
    send(srv, corpus("ham", 1)[0])
    assert len(srv.messages(USER)) == 1
    assert not [q for q in zone.queries if q[0].endswith("bl.test")]
