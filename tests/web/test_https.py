"""The `https` listener: the same endpoints over implicit TLS with the [tls] certificate."""

from __future__ import annotations

import http.client
import ssl
import xml.etree.ElementTree as ET


def test_autoconfig_over_https(server_factory):
    srv = server_factory("tls", listen={"https": ["127.0.0.1:0"]})
    ctx = ssl.create_default_context(cafile=str(srv.config.tls.cert))
    ctx.check_hostname = False  # the self-signed certificate names mail.example.test
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port("https"), context=ctx, timeout=10)
    try:
        conn.request("GET", "/mail/config-v1.1.xml", headers={"Host": "autoconfig.example.test"})
        resp = conn.getresponse()
        body = resp.read()
        peer = conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()
    assert resp.status == 200
    root = ET.fromstring(body)
    assert root.find("emailProvider/domain").text == "example.test"
    pem = srv.config.tls.cert.read_text()
    assert ssl.DER_cert_to_PEM_cert(peer).strip().splitlines()[1] in pem
