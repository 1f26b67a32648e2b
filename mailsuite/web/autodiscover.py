"""Outlook autodiscover: the POX request parser, the 2006a response, and the JSON redirect.

Outlook first asks `GET /autodiscover/autodiscover.json?Email=..&Protocol=AutodiscoverV1` and
expects a JSON object pointing at the XML endpoint, then POSTs the "plain old XML" request
(schema .../outlook/requestschema/2006) there and reads the .../outlook/responseschema/2006a
answer. Pure: bytes in, values out.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from mailsuite.web.settings import ClientSettings

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


class MalformedRequest(ValueError):
    """The POX body is not XML we can read (answered 400)."""


class UnsupportedProtocol(ValueError):
    """The JSON endpoint was asked for something other than AutodiscoverV1 (answered 400)."""


def parse_pox_request(body: bytes) -> str:
    """The EMailAddress of a POX autodiscover request; MalformedRequest if there is none."""
    # Outlook's request never has a DOCTYPE. defusedxml refuses one as the parser meets it,
    # after the body's own encoding is decoded (UTF-16, UTF-32, EBCDIC alike), so no entity
    # is ever declared, expanded or fetched: a byte search for "<!DOCTYPE" cannot see through
    # an encoding.
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError, LookupError) as e:
        raise MalformedRequest(str(e)) from None
    # Accept the address with or without the request namespace: some tools omit it.
    for el in root.iter():
        if el.tag in (f"{{{REQUEST_NS}}}EMailAddress", "EMailAddress") and el.text:
            return el.text.strip()
    raise MalformedRequest("no EMailAddress")


def _protocol(
    account: ET.Element, kind: str, host: str, port: int, encryption: str, login: str
) -> None:
    p = ET.SubElement(account, "Protocol")
    ET.SubElement(p, "Type").text = kind
    ET.SubElement(p, "Server").text = host
    ET.SubElement(p, "Port").text = str(port)
    ET.SubElement(p, "DomainRequired").text = "off"
    ET.SubElement(p, "LoginName").text = login
    # SPA is NTLM ("Secure Password Authentication"); we only do plain passwords over TLS.
    ET.SubElement(p, "SPA").text = "off"
    ET.SubElement(p, "SSL").text = "on"
    # Encryption wins over SSL when present: "SSL" = implicit TLS, "TLS" = STARTTLS.
    ET.SubElement(p, "Encryption").text = encryption
    ET.SubElement(p, "AuthRequired").text = "on"


def pox_response(settings: ClientSettings, address: str) -> bytes:
    """The 2006a response with IMAP, POP3 and SMTP blocks for `address`."""
    ET.register_namespace("", RESPONSE_NS)
    root = ET.Element(f"{{{RESPONSE_NS}}}Autodiscover")
    # The inner Response lives in the Outlook namespace; written as a default xmlns on it.
    response = ET.SubElement(root, "Response", xmlns=OUTLOOK_NS)
    account = ET.SubElement(response, "Account")
    ET.SubElement(account, "AccountType").text = "email"
    ET.SubElement(account, "Action").text = "settings"
    h = settings.host
    _protocol(account, "IMAP", h, settings.imaps_port, "SSL", address)
    _protocol(account, "POP3", h, settings.pop3s_port, "SSL", address)
    # Submission on 587 with STARTTLS: every Outlook version since 2007 does it.
    _protocol(account, "SMTP", h, settings.submission_port, "TLS", address)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def json_redirect(settings: ClientSettings, protocol: str) -> bytes:
    """The AutodiscoverV1 JSON answer naming the XML endpoint."""
    if protocol.lower() != "autodiscoverv1":
        raise UnsupportedProtocol(protocol)
    doc = {
        "Protocol": "AutodiscoverV1",
        "Url": settings.https_url("/autodiscover/autodiscover.xml"),
    }
    return json.dumps(doc).encode("ascii")
