"""Greylisting (RFC 6647): 451 4.7.1 for a new triplet, a pass on retry after the delay."""

from __future__ import annotations

import smtplib
import time

import pytest

from mailsuite.junk.greylist import client_network
from tests.junk.conftest import USER, listed_server, send
from tests.junk.corpus import corpus


def _refused(srv, raw, sender="someone@example.org"):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
        send(srv, raw, sender=sender)
    return err.value.recipients[USER]


def test_new_triplet_is_told_to_retry_and_passes_after_the_delay(server_factory, stub_dns, zone):
    srv = listed_server(server_factory, stub_dns, greylist=True)
    raw = corpus("ham", 1)[0]
    code, text = _refused(srv, raw)
    assert code == 451 and text.startswith(b"4.7.1 Greylisted")
    assert b"retry in 300 seconds" in text
    code, _ = _refused(srv, raw)  # too early
    assert code == 451
    grey = srv.services.junk.greylist
    grey.clock = lambda: time.time() + 301
    send(srv, raw)
    assert len(srv.messages(USER)) == 1
    grey.clock = lambda: time.time() + 3 * 86400
    send(srv, raw)  # remembered: no new wait
    assert len(srv.messages(USER)) == 2
    code, _ = _refused(srv, raw, sender="other@example.org")  # another triplet
    assert code == 451


def test_greylisting_is_off_by_default(junk_server):
    assert junk_server.services.junk.greylist is None


def test_allowlisted_clients_are_not_greylisted(server_factory, stub_dns, zone):
    zone.a("1.0.0.127.wl.test", "127.0.10.1")
    srv = listed_server(server_factory, stub_dns, greylist=True, dnswl=[{"zone": "wl.test"}])
    send(srv, corpus("ham", 1)[0])
    assert len(srv.messages(USER)) == 1


def test_spf_pass_from_a_domain_seen_before_skips_greylisting(server_factory, stub_dns, zone):
    zone.txt("known.example", "v=spf1 ip4:127.0.0.1 -all")
    srv = listed_server(server_factory, stub_dns, greylist=True)
    srv.services.junk.greylist.note_domains(["known.example"])
    send(srv, corpus("ham", 1)[0], sender="bob@known.example")
    assert len(srv.messages(USER)) == 1
    zone.txt("unseen.example", "v=spf1 ip4:127.0.0.1 -all")
    code, _ = _refused(srv, corpus("ham", 1)[0], sender="bob@unseen.example")
    assert code == 451


def test_triplets_use_the_client_network():
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
