"""Certificates from an ACME CA (RFC 8555): the server orders, renews and installs its own,
answering the CA's http-01 or tls-alpn-01 challenge on its own listeners."""
