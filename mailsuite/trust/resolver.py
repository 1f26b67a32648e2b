"""Asynchronous DNS lookups for the trust checks, through twisted.names and our configuration.

SPF, DMARC and DKIM key discovery are written against a small lookup function
``lookup(name, rrtype) -> Deferred[list]`` so that their logic stays free of sockets and can be
driven by any resolver.  The one used in production is `TwistedDnsLookup`, which answers:

* ``"A"`` / ``"AAAA"``: addresses as strings,
* ``"MX"``: ``(preference, exchange)`` tuples,
* ``"TXT"``: one ``bytes`` per record, its character-strings concatenated (RFC 7208 §3.3),
* ``"PTR"`` / ``"CNAME"`` / ``"SRV"``: names (SRV: ``(priority, weight, port, target)``).

NXDOMAIN and "no records of that type" both give an empty list: SPF counts them alike as "void
lookups" (RFC 7208 §4.6.4).  Anything else (SERVFAIL, REFUSED, timeout) errbacks with
`DnsTempError`, which the checks turn into "temperror" (and the SMTP server into a 451).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

from twisted.internet import defer
from twisted.names import client, dns, error

from mailsuite.config import Config, ConfigError

DnsLookup = Callable[[str, str], defer.Deferred]

_TYPES = {
    "A": dns.A,
    "AAAA": dns.AAAA,
    "MX": dns.MX,
    "TXT": dns.TXT,
    "PTR": dns.PTR,
    "CNAME": dns.CNAME,
    "SRV": dns.SRV,
}


class DnsTempError(Exception):
    """A lookup failed in a way that may succeed later (SERVFAIL, timeout, refused)."""

    def __init__(self, name: str, rrtype: str, reason: str):
        super().__init__(f"{rrtype} {name}: {reason}")
        self.name = name
        self.rrtype = rrtype
        self.reason = reason


def parse_resolver_address(text: str, key: str = "trust.resolvers") -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:53', '[::1]:53' or '::1' into (address, port); ConfigError if bad."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "53"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"{text!r}: a resolver must be an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, f"{text!r}: bad port")
    return host, int(port)


def encode_name(name: str) -> bytes | None:
    """A query name as bytes, or None when it cannot be a DNS name (lookups of it are void)."""
    name = name.rstrip(".")
    if not name or ".." in name or len(name) > 253:
        return None
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        try:
            raw = name.encode("idna")
        except UnicodeError:
            return None
    if any(len(label) > 63 or not label for label in raw.split(b".")):
        return None
    return raw


class TwistedDnsLookup:
    """The `DnsLookup` used in production: twisted.names with our servers and timeout."""

    def __init__(self, resolver, timeout: float = 5.0):
        self.resolver = resolver
        # twisted.names retries each server once per step; two steps inside the budget.
        first = max(0.2, timeout / 3)
        self.timeouts = (first, max(0.2, timeout - first))

    def __call__(self, name: str, rrtype: str) -> defer.Deferred:
        qtype = _TYPES[rrtype]
        raw = encode_name(name)
        if raw is None:
            return defer.succeed([])
        d = self.resolver.query(dns.Query(raw, qtype, dns.IN), timeout=self.timeouts)
        d.addCallbacks(
            lambda result: _payloads(result[0], qtype),
            lambda failure: _failure(failure, name, rrtype),
        )
        return d


def _failure(failure, name: str, rrtype: str):
    if failure.check(error.DNSNameError):
        return []
    reason = failure.value.__class__.__name__
    raise DnsTempError(name, rrtype, reason)


def _payloads(answers, qtype: int) -> list:
    out: list = []
    for rr in answers:
        if rr.type != qtype:
            continue  # CNAMEs in the chain; the resolver already followed them
        p = rr.payload
        if qtype == dns.A:
            out.append(p.dottedQuad())
        elif qtype == dns.AAAA:
            out.append(socket.inet_ntop(socket.AF_INET6, p.address))
        elif qtype == dns.MX:
            out.append((p.preference, p.name.name.decode("ascii", "replace")))
        elif qtype == dns.TXT:
            out.append(b"".join(p.data))
        elif qtype == dns.SRV:
            out.append((p.priority, p.weight, p.port, p.target.name.decode("ascii", "replace")))
        else:
            out.append(p.name.name.decode("ascii", "replace"))
    return out


def resolver_servers(config: Config) -> list[tuple[str, int]]:
    """[trust] resolvers, else [relay] resolvers: one DNS setting for the whole server."""
    key = "trust.resolvers" if config.trust.resolvers else "relay.resolvers"
    texts = config.trust.resolvers or config.relay.resolvers
    return [parse_resolver_address(t, key) for t in texts]


def build_lookup(config: Config, reactor=None) -> TwistedDnsLookup:
    """The lookup function for `config`: its resolvers, or the system's /etc/resolv.conf."""
    servers = resolver_servers(config)
    if servers:
        resolver = client.Resolver(servers=servers, reactor=reactor)
    else:
        resolv = "/etc/resolv.conf" if Path("/etc/resolv.conf").exists() else None
        resolver = client.Resolver(resolv=resolv, reactor=reactor)
    return TwistedDnsLookup(resolver, config.trust.dns_timeout)
