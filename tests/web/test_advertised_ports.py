"""With no `[public]` table, what clients are told is what answers: the ports the listeners
really use and their loopback address for a loopback-only server (the default setup), so that
a mail program configured by autoconfig, autodiscover or the Apple profile can connect."""

from __future__ import annotations

import json
import plistlib
import xml.etree.ElementTree as ET

from tests.web.conftest import Http

AUTODISCOVER_NS = (
    "{http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a}"
)


def test_autoconfig_without_public_advertises_the_real_listeners(server_factory):
    srv = server_factory("plain")
    web = Http(("127.0.0.1", srv.port("http")))
    status, _, body = web.request("GET", "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    assert status == 200
    provider = ET.fromstring(body).find("emailProvider")
    got = {
        (el.get("type"), el.findtext("socketType")): (
            el.findtext("hostname"),
            int(el.findtext("port")),
        )
        for el in provider
        if el.tag in ("incomingServer", "outgoingServer")
    }
    assert got == {
        ("imap", "SSL"): ("127.0.0.1", srv.port("imaps")),
        ("imap", "STARTTLS"): ("127.0.0.1", srv.port("imap")),
        ("pop3", "SSL"): ("127.0.0.1", srv.port("pop3s")),
        ("pop3", "STARTTLS"): ("127.0.0.1", srv.port("pop3")),
        ("smtp", "SSL"): ("127.0.0.1", srv.port("submissions")),
        ("smtp", "STARTTLS"): ("127.0.0.1", srv.port("submission")),
    }

    status, _, body = web.request("GET", "/apple/mobileconfig?emailaddress=alice%40example.test")
    assert status == 200
    (mail,) = [
        p for p in plistlib.loads(body)["PayloadContent"] if "IncomingMailServerHostName" in p
    ]
    assert mail["IncomingMailServerHostName"] == "127.0.0.1"
    assert mail["IncomingMailServerPortNumber"] == srv.port("imaps")
    assert mail["OutgoingMailServerPortNumber"] == srv.port("submissions")

    request = (
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
        'requestschema/2006"><Request><EMailAddress>alice@example.test</EMailAddress>'
        "<AcceptableResponseSchema>" + AUTODISCOVER_NS[1:-1] + "</AcceptableResponseSchema>"
        "</Request></Autodiscover>"
    ).encode()
    status, _, body = web.request("POST", "/autodiscover/autodiscover.xml", body=request)
    assert status == 200
    ports = {
        p.findtext(AUTODISCOVER_NS + "Type"): int(p.findtext(AUTODISCOVER_NS + "Port"))
        for p in ET.fromstring(body).iter(AUTODISCOVER_NS + "Protocol")
    }
    assert ports == {
        "IMAP": srv.port("imaps"),
        "POP3": srv.port("pop3s"),
        "SMTP": srv.port("submission"),
    }


def test_a_public_table_still_wins_and_no_https_listener_means_443(server_factory):
    srv = server_factory("public", public={"host": "mx.public.test", "imaps_port": 993})
    web = Http(("127.0.0.1", srv.port("http")))
    _, _, body = web.request("GET", "/mail/config-v1.1.xml?emailaddress=alice%40example.test")
    provider = ET.fromstring(body).find("emailProvider")
    imaps = [
        el for el in provider if el.get("type") == "imap" and el.findtext("socketType") == "SSL"
    ][0]
    assert (imaps.findtext("hostname"), int(imaps.findtext("port"))) == ("mx.public.test", 993)
    _, _, body = web.request(
        "GET", "/autodiscover/autodiscover.json?Email=alice%40example.test&Protocol=AutodiscoverV1"
    )
    assert json.loads(body)["Url"] == "https://mx.public.test/autodiscover/autodiscover.xml"
