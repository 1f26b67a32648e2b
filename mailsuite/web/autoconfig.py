"""Thunderbird autoconfig: the clientConfig v1.1 XML document for one domain.

Format: Mozilla's "Autoconfiguration" clientConfig 1.1 (the file Thunderbird fetches from
`autoconfig.<domain>/mail/config-v1.1.xml` and `<domain>/.well-known/autoconfig/...`).
Pure: settings in, bytes out.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mailsuite.web.settings import ClientSettings

# Thunderbird replaces this placeholder with what the user typed.
EMAIL_PLACEHOLDER = "%EMAILADDRESS%"


def _server(
    parent: ET.Element, tag: str, kind: str, host: str, port: int, socket_type: str, username: str
) -> None:
    srv = ET.SubElement(parent, tag, type=kind)
    ET.SubElement(srv, "hostname").text = host
    ET.SubElement(srv, "port").text = str(port)
    # "SSL" = implicit TLS from the first byte, "STARTTLS" = upgrade after the greeting.
    ET.SubElement(srv, "socketType").text = socket_type
    ET.SubElement(srv, "authentication").text = "password-cleartext"
    ET.SubElement(srv, "username").text = username


def autoconfig_xml(settings: ClientSettings, domain: str, address: str | None = None) -> bytes:
    """The clientConfig document; `address` None leaves %EMAILADDRESS% for the client to fill."""
    username = address if address else EMAIL_PLACEHOLDER
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{domain} mail"
    ET.SubElement(provider, "displayShortName").text = domain
    h = settings.host
    # Order is preference: RFC 8314 §3.3 recommends implicit TLS over STARTTLS.
    _server(provider, "incomingServer", "imap", h, settings.imaps_port, "SSL", username)
    _server(provider, "incomingServer", "imap", h, settings.imap_port, "STARTTLS", username)
    _server(provider, "incomingServer", "pop3", h, settings.pop3s_port, "SSL", username)
    _server(provider, "incomingServer", "pop3", h, settings.pop3_port, "STARTTLS", username)
    _server(provider, "outgoingServer", "smtp", h, settings.submissions_port, "SSL", username)
    _server(provider, "outgoingServer", "smtp", h, settings.submission_port, "STARTTLS", username)
    ET.indent(root)
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n"
