"""DNS blocklists and allowlists (RFC 5782): client addresses (§2.1, §2.4) and domain names
(§2.2), looked up concurrently through twisted.names with the [trust] resolvers and kept for
their TTL.

A lookup that fails (timeout, SERVFAIL) counts as "not listed" and is logged: a DNS failure
never refuses mail.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import client, dns, error

from mailsuite.config import Config
from mailsuite.logtext import visible
from mailsuite.trust.resolver import encode_name, resolver_servers

log = Logger(namespace="mailsuite.junk")

# NXDOMAIN answers are kept this long (the zone's SOA minimum is not at hand).
NEGATIVE_TTL = 300
MAX_TTL = 86400
CACHE_ENTRIES = 50_000
# RFC 5782 §5: 127.0.0.1 is never a listing; 127.255.255.0/24 is where large lists answer
# "you are querying wrongly" (through an open resolver, over quota).
_ERROR_CODES = ipaddress.ip_network("127.255.255.0/24")


@dataclass(frozen=True)
class DnsList:
    zone: str
    action: str  # "reject" or "score"
    weight: float
    codes: tuple[tuple[int, int], ...]  # inclusive ranges of IPv4 answers that count

    @classmethod
    def from_config(cls, entry: dict) -> DnsList:
        ranges = []
        for code in entry.get("codes", []):
            low, _, high = str(code).partition("-")
            lo = int(ipaddress.IPv4Address(low.strip()))
            hi = int(ipaddress.IPv4Address(high.strip())) if high else lo
            ranges.append((lo, hi))
        return cls(
            entry["zone"].strip(".").lower(),
            entry.get("action", "score"),
            float(entry.get("weight", 0.0)),
            tuple(ranges),
        )

    def counts(self, answer: str) -> bool:
        """Whether an A answer is a listing this configuration counts."""
        try:
            addr = ipaddress.IPv4Address(answer)
        except ValueError:
            return False
        if self.codes:
            return any(lo <= int(addr) <= hi for lo, hi in self.codes)
        if addr in _ERROR_CODES:
            log.warn("junk: {zone} answers {code}: queries refused", zone=self.zone, code=answer)
            return False
        return addr.is_loopback and str(addr) != "127.0.0.1"


@dataclass(frozen=True)
class Listing:
    """One list that names a client or a domain."""

    dns_list: DnsList
    subject: str  # the address or domain listed
    code: str  # the first counted answer


def reversed_name(ip: str) -> str | None:
    """§2.1: IPv4 octets reversed; §2.4: IPv6 nibbles reversed (None when not an address)."""
    try:
        addr = ipaddress.ip_address(ip.removeprefix("::ffff:") if "." in ip else ip)
    except ValueError:
        return None
    if addr.version == 4:
        return ".".join(reversed(str(addr).split(".")))
    return ".".join(reversed(addr.exploded.replace(":", "")))


class DnsListChecker:
    """The configured lists and the cache of their answers (one per server)."""

    def __init__(self, config: Config, resolver=None, clock=time.monotonic):
        junk = config.junk
        self.blocklists = [DnsList.from_config(e) for e in junk.dnsbl]
        self.allowlists = [DnsList.from_config(e) for e in junk.dnswl]
        self.domain_lists = [DnsList.from_config(e) for e in junk.domain_lists]
        self.timeout = config.trust.dns_timeout
        self.clock = clock
        self._config = config
        self._resolver = resolver
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self.lookups = 0  # queries sent (the cache's effect, for tests and stats)

    @property
    def active(self) -> bool:
        return bool(self.blocklists or self.allowlists or self.domain_lists)

    def resolver(self):
        if self._resolver is None:
            servers = resolver_servers(self._config)
            if servers:
                self._resolver = client.Resolver(servers=servers)
            else:
                resolv = "/etc/resolv.conf" if Path("/etc/resolv.conf").exists() else None
                self._resolver = client.Resolver(resolv=resolv)
        return self._resolver

    def check_client(self, ip: str) -> defer.Deferred:
        """Deferred[(block listings, allow listings)] for a client address."""
        name = reversed_name(ip)
        if name is None or not (self.blocklists or self.allowlists):
            return defer.succeed(([], []))
        d = defer.gatherResults(
            [self._check(lst, name, ip) for lst in self.blocklists + self.allowlists]
        )
        n = len(self.blocklists)
        return d.addCallback(lambda found: (_hits(found[:n]), _hits(found[n:])))

    def check_domains(self, domains: list[str]) -> defer.Deferred:
        """Deferred[list[Listing]] for domain names (§2.2: the name itself under the zone)."""
        work = [
            self._check(lst, domain.lower().strip("."), domain)
            for domain in dict.fromkeys(domains)
            for lst in self.domain_lists
        ]
        return defer.gatherResults(work).addCallback(_hits)

    def _check(self, dns_list: DnsList, prefix: str, subject: str) -> defer.Deferred:
        d = self._addresses(f"{prefix}.{dns_list.zone}")

        def judge(answers):
            for answer in answers:
                if dns_list.counts(answer):
                    return Listing(dns_list, subject, answer)
            return None

        return d.addCallback(judge)

    def _addresses(self, qname: str) -> defer.Deferred:
        """A answers for `qname`, from the cache while their TTL lasts; [] on failure."""
        now = self.clock()
        hit = self._cache.get(qname)
        if hit is not None and hit[0] > now:
            return defer.succeed(hit[1])
        raw = encode_name(qname)
        if raw is None:
            return defer.succeed([])
        self.lookups += 1
        first = max(0.2, self.timeout / 3)
        d = self.resolver().query(
            dns.Query(raw, dns.A, dns.IN), timeout=(first, max(0.2, self.timeout - first))
        )

        def answered(result):
            records = [rr for rr in result[0] if rr.type == dns.A]
            addrs = [rr.payload.dottedQuad() for rr in records]
            ttl = min((rr.ttl for rr in records), default=NEGATIVE_TTL)
            self._remember(qname, addrs, min(max(ttl, 1), MAX_TTL))
            return addrs

        def failed(failure):
            if failure.check(error.DNSNameError):
                self._remember(qname, [], NEGATIVE_TTL)
                return []
            log.warn(
                "junk: DNS list lookup {name} failed ({why}); counted as not listed",
                name=visible(qname),
                why=failure.value.__class__.__name__,
            )
            return []

        return d.addCallbacks(answered, failed)

    def _remember(self, qname: str, addrs: list[str], ttl: float) -> None:
        if len(self._cache) >= CACHE_ENTRIES:
            now = self.clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
        self._cache[qname] = (self.clock() + ttl, addrs)


def _hits(found) -> list[Listing]:
    return [f for f in found if f is not None]
