"""The Apple configuration profile, fetched over HTTP and parsed with plistlib."""

from __future__ import annotations

import plistlib

import pytest

from mailsuite.web import mobileconfig


def test_profile_has_imap_and_smtp_from_config_and_no_password(web, web_config):
    status, headers, body = web.request(
        "GET", "/apple/mobileconfig?emailaddress=erin%40example.test"
    )
    assert status == 200
    assert headers["content-type"] == "application/x-apple-aspen-config"
    assert 'filename="erin_example.test.mobileconfig"' in headers["content-disposition"]
    profile = plistlib.loads(body)
    assert profile["PayloadType"] == "Configuration"
    assert profile["PayloadVersion"] == 1
    (mail,) = profile["PayloadContent"]
    pub = web_config.public
    assert mail["PayloadType"] == "com.apple.mail.managed"
    assert mail["EmailAccountType"] == "EmailTypeIMAP"
    assert mail["EmailAddress"] == "erin@example.test"
    assert mail["IncomingMailServerHostName"] == pub.host
    assert mail["IncomingMailServerPortNumber"] == pub.imaps_port
    assert mail["IncomingMailServerUseSSL"] is True
    assert mail["IncomingMailServerUsername"] == "erin@example.test"
    assert mail["OutgoingMailServerHostName"] == pub.host
    assert mail["OutgoingMailServerPortNumber"] == pub.submissions_port
    assert mail["OutgoingMailServerUseSSL"] is True
    assert mail["OutgoingMailServerUsername"] == "erin@example.test"
    assert not any("Password" in k and k != "OutgoingPasswordSameAsIncomingPassword" for k in mail)
    assert mail["PayloadUUID"] != profile["PayloadUUID"]


def test_profile_uuids_are_stable_so_reinstall_replaces(web_config):
    from mailsuite.web.settings import ClientSettings

    s = ClientSettings.from_config(web_config)
    a = plistlib.loads(mobileconfig.mobileconfig(s, "erin@example.test"))
    b = plistlib.loads(mobileconfig.mobileconfig(s, "erin@example.test"))
    c = plistlib.loads(mobileconfig.mobileconfig(s, "fred@example.test"))
    assert a["PayloadUUID"] == b["PayloadUUID"] != c["PayloadUUID"]


def test_profile_for_unknown_domain_is_404(web):
    status, _, body = web.request("GET", "/apple/mobileconfig?emailaddress=erin%40nowhere.test")
    assert (status, body) == (404, b"Not Found\n")


def test_profile_without_address_is_400(web):
    status, _, _ = web.request("GET", "/apple/mobileconfig")
    assert status == 400


@pytest.mark.parametrize(
    "query",
    [
        "%C3%A9%40example.test",  # non-ASCII local part
        "%01%40example.test",  # a control character
        "a%01b%40example.test",
        "erin%0A%40example.test",  # a line feed inside
        "%3Cx%3E%40example.test",  # markup
        "e%22rin%40example.test",
    ],
)
def test_profile_for_an_invalid_address_is_400_and_echoes_nothing(web, query):
    status, headers, body = web.request("GET", "/apple/mobileconfig?emailaddress=" + query)
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert b"Traceback" not in body and b"\x01" not in body and b"<x>" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/mail/config-v1.1.xml?emailaddress=%01%40example.test",
        "/autodiscover/autodiscover.xml?emailaddress=%C3%A9%40example.test",
        "/autodiscover/autodiscover.json?Email=%01%40example.test&Protocol=AutodiscoverV1",
    ],
)
def test_every_endpoint_refuses_an_invalid_address_with_400(web, path):
    status, _, body = web.request("GET", path)
    assert status == 400
    assert b"\x01" not in body
