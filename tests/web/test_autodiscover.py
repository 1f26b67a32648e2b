"""Outlook autodiscover: the POX POST (2006a response), the GET form and the JSON redirect."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET

import pytest

from mailsuite.web.autodiscover import OUTLOOK_NS, RESPONSE_NS
from mailsuite.web.site import MAX_BODY

# What Outlook 2016+/365 sends (CRLF line ends and all).
OUTLOOK_REQUEST = (
    b'<?xml version="1.0" encoding="utf-8"?>\r\n'
    b'<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
    b'requestschema/2006">\r\n'
    b"  <Request>\r\n"
    b"    <EMailAddress>carol@example.test</EMailAddress>\r\n"
    b"    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/"
    b"responseschema/2006a</AcceptableResponseSchema>\r\n"
    b"  </Request>\r\n"
    b"</Autodiscover>\r\n"
)
OUTLOOK_HEADERS = {
    "Content-Type": "text/xml",
    "User-Agent": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
}


def check_pox(body: bytes, cfg, address: str) -> None:
    root = ET.fromstring(body)
    assert root.tag == f"{{{RESPONSE_NS}}}Autodiscover"
    ns = {"o": OUTLOOK_NS}
    account = root.find("o:Response/o:Account", ns)
    assert account is not None
    assert account.findtext("o:AccountType", namespaces=ns) == "email"
    assert account.findtext("o:Action", namespaces=ns) == "settings"
    protos = {p.findtext("o:Type", namespaces=ns): p for p in account.findall("o:Protocol", ns)}
    assert set(protos) == {"IMAP", "POP3", "SMTP"}
    want = {
        "IMAP": (cfg.public.imaps_port, "SSL"),
        "POP3": (cfg.public.pop3s_port, "SSL"),
        "SMTP": (cfg.public.submission_port, "TLS"),
    }
    for kind, (port, enc) in want.items():
        p = protos[kind]
        assert p.findtext("o:Server", namespaces=ns) == cfg.public.host
        assert int(p.findtext("o:Port", namespaces=ns)) == port
        assert p.findtext("o:Encryption", namespaces=ns) == enc
        assert p.findtext("o:SSL", namespaces=ns) == "on"
        assert p.findtext("o:LoginName", namespaces=ns) == address
        assert p.findtext("o:SPA", namespaces=ns) == "off"
        assert p.findtext("o:AuthRequired", namespaces=ns) == "on"


@pytest.mark.parametrize(
    "path", ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"]
)
def test_outlook_pox_post_gets_2006a_settings(web, web_config, path):
    status, headers, body = web.request(
        "POST",
        path,
        body=OUTLOOK_REQUEST,
        host="autodiscover.example.test",
        headers=OUTLOOK_HEADERS,
    )
    assert status == 200
    assert headers["content-type"].startswith("application/xml")
    check_pox(body, web_config, "carol@example.test")


def test_autodiscover_get_with_email_argument(web, web_config):
    status, _, body = web.request("GET", "/autodiscover/autodiscover.xml?Email=dan%40second.test")
    assert status == 200
    check_pox(body, web_config, "dan@second.test")


def test_json_autodiscover_redirects_to_the_xml_endpoint(web, web_config):
    status, headers, body = web.request(
        "GET", "/autodiscover/autodiscover.json?Email=carol%40example.test&Protocol=AutodiscoverV1"
    )
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "Protocol": "AutodiscoverV1",
        "Url": "https://mx.public.test:8443/autodiscover/autodiscover.xml",
    }


def test_json_autodiscover_v1_path_form(web):
    status, _, body = web.request(
        "GET", "/autodiscover/autodiscover.json/v1.0/carol%40example.test?Protocol=AutodiscoverV1"
    )
    assert status == 200
    assert json.loads(body)["Protocol"] == "AutodiscoverV1"


def test_json_autodiscover_other_protocol_is_400(web):
    status, _, _ = web.request(
        "GET", "/autodiscover/autodiscover.json?Email=carol%40example.test&Protocol=ActiveSync"
    )
    assert status == 400


def test_unknown_domain_is_404_without_detail(web):
    body = OUTLOOK_REQUEST.replace(b"example.test", b"elsewhere.test")
    s1, _, b1 = web.request("POST", "/autodiscover/autodiscover.xml", body=body)
    s2, _, b2 = web.request(
        "GET", "/autodiscover/autodiscover.json?Email=x%40elsewhere.test&Protocol=AutodiscoverV1"
    )
    assert (s1, b1) == (s2, b2) == (404, b"Not Found\n")


@pytest.mark.parametrize(
    "body",
    [
        b"<Autodiscover><Request><EMailAddress>",  # truncated
        b"\x00\xff garbage",
        b"<Autodiscover/>",  # no address
        b"",
        # An entity expansion bomb: refused before expat can expand it.
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;">]>'
        b"<Autodiscover><Request><EMailAddress>&y;</EMailAddress></Request></Autodiscover>",
    ],
)
def test_malformed_xml_is_400_never_a_traceback(web, body):
    status, headers, resp = web.request("POST", "/autodiscover/autodiscover.xml", body=body)
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert b"Traceback" not in resp and b"File " not in resp


def test_declared_huge_body_is_413_before_the_upload(web_server):
    # Only the headers are sent: the server must answer without waiting for 10 MB.
    with socket.create_connection(web_server, timeout=5) as s:
        s.sendall(
            b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.test\r\n"
            b"Content-Type: text/xml\r\nContent-Length: 10000000\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 413 ")
    assert data.endswith(b"Request body too large\n")


def test_chunked_body_over_the_limit_is_413(web_server):
    chunk = b"x" * 8192
    with socket.create_connection(web_server, timeout=5) as s:
        s.sendall(
            b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: example.test\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for _ in range(MAX_BODY // len(chunk) + 2):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        s.sendall(b"0\r\n\r\n")
        data = b""
        while part := s.recv(4096):
            data += part
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"Traceback" not in data


UTF16_ENTITY_REQUEST = (
    '<?xml version="1.0" encoding="UTF-16"?>'
    '<!DOCTYPE Autodiscover [<!ENTITY who "carol@example.test">]>'
    "<Autodiscover><Request><EMailAddress>&who;</EMailAddress></Request></Autodiscover>"
)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_a_dtd_is_refused_whatever_the_encoding(web, encoding):
    # The internal entity names a served address: expanding it would answer 200 with settings.
    body = UTF16_ENTITY_REQUEST.encode(encoding)
    if encoding == "utf-16-be":
        body = b"\xfe\xff" + body
    status, _, resp = web.request("POST", "/autodiscover/autodiscover.xml", body=body)
    assert status == 400
    assert b"carol@example.test" not in resp


def test_a_doctype_without_entities_is_refused_too(web):
    body = OUTLOOK_REQUEST.replace(
        b"\r\n<Autodiscover",
        b'\r\n<!DOCTYPE Autodiscover SYSTEM "http://127.0.0.1:1/x.dtd">\r\n<Autodiscover',
        1,
    )
    status, _, _ = web.request("POST", "/autodiscover/autodiscover.xml", body=body)
    assert status == 400
