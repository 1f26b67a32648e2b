"""Thunderbird autoconfig over real HTTP, parsed with ElementTree and checked field by field."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mailsuite.config import Config

PATHS = ["/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"]


def expected_servers(cfg: Config) -> list[tuple[str, str, str, int, str]]:
    p = cfg.public
    return [
        ("incomingServer", "imap", p.host, p.imaps_port, "SSL"),
        ("incomingServer", "imap", p.host, p.imap_port, "STARTTLS"),
        ("incomingServer", "pop3", p.host, p.pop3s_port, "SSL"),
        ("incomingServer", "pop3", p.host, p.pop3_port, "STARTTLS"),
        ("outgoingServer", "smtp", p.host, p.submissions_port, "SSL"),
        ("outgoingServer", "smtp", p.host, p.submission_port, "STARTTLS"),
    ]


def check_document(body: bytes, cfg: Config, domain: str, username: str) -> None:
    root = ET.fromstring(body)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == domain
    assert provider.findtext("domain") == domain
    servers = [el for el in provider if el.tag in ("incomingServer", "outgoingServer")]
    got = [
        (
            el.tag,
            el.get("type"),
            el.findtext("hostname"),
            int(el.findtext("port")),
            el.findtext("socketType"),
        )
        for el in servers
    ]
    assert got == expected_servers(cfg)
    for el in servers:
        assert el.findtext("authentication") == "password-cleartext"
        assert el.findtext("username") == username
    # Bind address/hostname must never be what clients are told.
    assert b"bind.internal.test" not in body


@pytest.mark.parametrize("path", PATHS)
def test_autoconfig_with_emailaddress_names_the_address(web, web_config, path):
    status, headers, body = web.request(
        "GET", path + "?emailaddress=Alice%40Example.TEST", host="autoconfig.example.test"
    )
    assert status == 200
    assert headers["content-type"].startswith("application/xml")
    check_document(body, web_config, "example.test", "Alice@example.test")


@pytest.mark.parametrize("path", PATHS)
def test_autoconfig_without_emailaddress_uses_host_header_and_placeholder(web, web_config, path):
    host = "autoconfig.second.test" if path.startswith("/mail") else "second.test"
    status, _, body = web.request("GET", path, host=host)
    assert status == 200
    check_document(body, web_config, "second.test", "%EMAILADDRESS%")


def test_autoconfig_host_header_with_port(web, web_config):
    status, _, body = web.request("GET", PATHS[0], host="autoconfig.example.test:8080")
    assert status == 200
    check_document(body, web_config, "example.test", "%EMAILADDRESS%")


def test_unknown_domain_is_a_bare_404_like_an_unknown_path(web):
    s1, _, b1 = web.request("GET", PATHS[0] + "?emailaddress=bob%40elsewhere.test")
    s2, _, b2 = web.request("GET", PATHS[1], host="autoconfig.elsewhere.test")
    s3, _, b3 = web.request("GET", "/no/such/thing")
    assert s1 == s2 == s3 == 404
    assert b1 == b2 == b3 == b"Not Found\n"


def test_malformed_address_is_400(web):
    status, _, body = web.request("GET", PATHS[0] + "?emailaddress=not-an-address")
    assert status == 400
    assert b"Traceback" not in body


def test_post_to_autoconfig_is_405(web):
    status, headers, _ = web.request("POST", PATHS[0], body=b"x")
    assert status == 405
    assert "GET" in headers["allow"]


def test_server_header_does_not_leak_versions(web):
    _, headers, _ = web.request("GET", "/mail/config-v1.1.xml")
    assert headers["server"] == "mailsuite"


def test_domain_added_in_the_accounts_db_is_served_at_once(web, web_running, web_config):
    status, _, _ = web.request("GET", PATHS[0], host="autoconfig.third.test")
    assert status == 404
    web_running.services.accounts.add_domain("third.test")
    status, _, body = web.request("GET", PATHS[0], host="autoconfig.third.test")
    assert status == 200
    check_document(body, web_config, "third.test", "%EMAILADDRESS%")
