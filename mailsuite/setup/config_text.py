"""The /etc/mailsuite/mailsuite.toml that `mailsuite setup` writes: production ports on every
address, the public name, ACME for the certificate, the service user, metrics on loopback."""

from __future__ import annotations

import dataclasses
import datetime
import json

from mailsuite.config import Config

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
METRICS_ADDRESS = "127.0.0.1:9025"

# Each listener on every IPv4 and IPv6 address, on its standard port.
PORTS = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "pop3": 110,
    "pop3s": 995,
    "imap": 143,
    "imaps": 993,
    "http": 80,
    "https": 443,
}


def q(text: str) -> str:
    """A TOML basic string (JSON's escaping is TOML's for these characters)."""
    return json.dumps(text, ensure_ascii=False)


def acme_table(admin: str, known: bool) -> str:
    """[acme]: live when this mailsuite's Config has the table, else the same lines as
    comments (a config with an unknown table would not load)."""
    lines = [
        "[acme]",
        "# Certificates from Let's Encrypt (RFC 8555), obtained and renewed by the server",
        "# itself; `mailsuite cert status` shows them. Until the first one is in, the",
        "# self-signed certificate of [tls] is served.",
        f"email = {q(admin)}",
        f"directory = {q(LETS_ENCRYPT)}",
        "# hosts = []       # default: hostname, and mta-sts./autoconfig./autodiscover. names",
        '# ca_file = ""     # the CA of a private ACME server',
        'challenge = "http-01"',
    ]
    if not known:
        lines = ["# " + line if not line.startswith("#") else line for line in lines]
    return "\n".join(lines) + "\n"


def config_text(
    hostname: str, domain: str, admin: str, data_dir: str, log_dir: str, user: str
) -> str:
    listen = "\n".join(
        f'{kind} = ["0.0.0.0:{port}", "[::]:{port}"]' for kind, port in PORTS.items()
    )
    has_acme = "acme" in {f.name for f in dataclasses.fields(Config)}
    today = datetime.date.today().isoformat()
    return f"""\
# mailsuite configuration, written by `mailsuite setup` on {today}.
# Every key is described in docs/configuration.md; `mailsuite check` validates this file.
hostname = {q(hostname)}
domains = [{q(domain)}]
data_dir = {q(data_dir)}
# The account the server runs as (systemd starts it so); admin commands run as root become it.
user = {q(user)}

[tls]
# Self-signed, made at first start: served until [acme] has a certificate.
cert = {q(data_dir + "/certs/mail.pem")}
key = {q(data_dir + "/certs/mail.key")}

{acme_table(admin, has_acme)}
[listen]
{listen}
# Prometheus metrics and /healthz (docs/monitoring.md): loopback only.
metrics = [{q(METRICS_ADDRESS)}]

[auth]
plaintext = "never"

[public]
# The name mail programs are told to connect to (autoconfig, autodiscover).
host = {q(hostname)}

[log]
file = {q(log_dir + "/mailsuite.log")}
"""
