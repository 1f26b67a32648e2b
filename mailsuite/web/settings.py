"""What clients are told: the public host name and ports, and which domains we answer for.

Every answer (autoconfig XML, autodiscover XML/JSON, Apple profile) is built from one
`ClientSettings` so that the three formats can never disagree about a port.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailsuite.config import Config, advertised_host, advertised_port

# RFC 5321 §4.5.3.1.3: a path is at most 256 octets, so an address is at most 254.
MAX_ADDRESS = 254
# RFC 5322 §3.2.3 atext and dots only, ASCII: the address goes into XML, plists and a file
# name, so nothing else (control characters, quotes, non-ASCII) gets that far.
_ADDRESS = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\Z"
)
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class BadAddress(ValueError):
    """The e-mail address a client sent is not one we could ever serve."""


@dataclass(frozen=True)
class ClientSettings:
    """Host name and ports clients are told: `[public]`, else what the listeners really use."""

    host: str
    imaps_port: int
    imap_port: int
    pop3s_port: int
    pop3_port: int
    submissions_port: int
    submission_port: int
    https_port: int

    @classmethod
    def from_config(cls, config: Config, bound: dict | None = None) -> ClientSettings:
        """From `[public]`, else the listeners this server really has (`bound`: kind ->
        [(host, port)] once they listen), so that a default setup advertises what answers."""

        def port(kind: str) -> int:
            return advertised_port(config, kind, bound, loopback=True)

        return cls(
            host=advertised_host(config),
            imaps_port=port("imaps"),
            imap_port=port("imap"),
            pop3s_port=port("pop3s"),
            pop3_port=port("pop3"),
            submissions_port=port("submissions"),
            submission_port=port("submission"),
            https_port=port("https"),
        )

    def https_url(self, path: str) -> str:
        """An absolute https URL on the public host (port omitted when it is 443)."""
        port = "" if self.https_port == 443 else f":{self.https_port}"
        return f"https://{self.host}{port}{path}"


def split_address(text: str) -> tuple[str, str]:
    """'User@Example.ORG' -> ('User', 'example.org'); BadAddress when it is not an address."""
    text = text.strip()
    if len(text) > MAX_ADDRESS or not _ADDRESS.match(text):
        raise BadAddress(text)
    local, _, domain = text.rpartition("@")
    return local, domain.lower()


def normalize_domain(text: str) -> str | None:
    """A host name from a Host header or an address, lower-cased, without port; None if invalid."""
    text = text.strip().lower().rstrip(".")
    if text.startswith("["):
        return None  # an IP literal is never one of our mail domains
    host = text.rsplit(":", 1)[0] if text.count(":") == 1 else text
    if not host or not _DOMAIN.match(host):
        return None
    return host
