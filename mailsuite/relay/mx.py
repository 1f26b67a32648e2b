"""Where mail for a domain goes: static routes, smarthost, or MX/A/AAAA through twisted.names.

The result is an ordered list of (host, address, port) to try, following RFC 5321 §5.1: MX
records by preference (equal preferences shuffled), the domain itself as an implicit MX when it
has none, a null MX (RFC 7505) as an immediate permanent failure.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer
from twisted.names import client, dns, error

from mailsuite.config import Config, parse_route
from mailsuite.relay.reply import DeliveryFailure


@dataclass(frozen=True)
class Destination:
    """One address to connect to; ``host`` is the name used in DSNs and TLS SNI."""

    host: str
    address: str
    port: int


def parse_resolver(text: str) -> tuple[str, int]:
    """'1.2.3.4', '1.2.3.4:53', '[::1]:53' or '::1' into (address, port)."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "127.0.0.1" if host == "localhost" else None


def _dns_failure(domain: str, failure: Exception, what: str) -> DeliveryFailure:
    # RFC 3463: 5.1.2 bad destination system (NXDOMAIN); 4.4.3 directory server failure.
    if isinstance(failure, error.DNSNameError):
        return DeliveryFailure("5.1.2", f"domain {domain} does not exist ({what} lookup)")
    return DeliveryFailure("4.4.3", f"DNS {what} lookup for {domain} failed: {failure!r}")


class MxResolver:
    """Resolves destinations for a domain; one per runner (twisted.names caches nothing here)."""

    def __init__(self, config: Config, reactor=None):
        self.config = config
        relay = config.relay
        t = max(1, relay.dns_timeout)
        # Two tries inside the total budget; twisted.names retries each server per step.
        timeouts = (max(1, t // 3), t - max(1, t // 3))
        if relay.resolvers:
            servers = [parse_resolver(s) for s in relay.resolvers]
            self.resolver = client.Resolver(servers=servers, timeout=timeouts, reactor=reactor)
        else:
            resolv = "/etc/resolv.conf" if Path("/etc/resolv.conf").exists() else None
            self.resolver = client.Resolver(resolv=resolv, timeout=timeouts, reactor=reactor)

    async def destinations(self, domain: str) -> list[Destination]:
        """Ordered connection targets for ``domain``; raises DeliveryFailure."""
        domain = domain.rstrip(".").lower()
        routes = {k.lower(): v for k, v in self.config.relay.routes.items()}
        if domain in routes:
            host, port = parse_route(routes[domain], f"relay.routes.{domain}")
            return await self.host_destinations(host, port)
        hosts = await self.mx_hosts(domain)
        out: list[Destination] = []
        last: DeliveryFailure | None = None
        for host in hosts:
            try:
                out.extend(await self.host_destinations(host, self.config.relay.mx_port))
            except DeliveryFailure as e:
                last = e  # RFC 5321 §5.1: an MX host without addresses is skipped
        if not out:
            if last is not None and hosts == [domain]:
                raise last
            raise DeliveryFailure("4.4.4", f"no usable address for the mail exchangers of {domain}")
        return out

    async def mx_hosts(self, domain: str) -> list[str]:
        """MX host names by preference, or [domain] as the implicit MX."""
        try:
            answers, _, _ = await defer.Deferred.fromCoroutine(self._mx(domain))
        except (error.DNSNameError, error.DomainError) as e:
            raise _dns_failure(domain, e, "MX") from None
        except Exception as e:
            raise _dns_failure(domain, e, "MX") from None
        records = [
            (rr.payload.preference, str(rr.payload.name)) for rr in answers if rr.type == dns.MX
        ]
        if not records:
            # RFC 5321 §5.1: no MX records → the domain itself is the implicit MX.
            return [domain]
        # RFC 7505 §3: a single MX of "." with preference 0 says "no mail here".
        real = [(p, n.rstrip(".").lower()) for p, n in records if n.rstrip(".")]
        if not real:
            raise DeliveryFailure("5.1.10", f"domain {domain} does not accept mail (null MX)")
        # RFC 5321 §5.1: same preference → random order, to spread load.
        random.shuffle(real)
        real.sort(key=lambda pn: pn[0])
        seen: list[str] = []
        for _, name in real:
            if name not in seen:
                seen.append(name)
        return seen

    async def _mx(self, domain: str):
        return await self.resolver.lookupMailExchange(domain)

    async def host_destinations(self, host: str, port: int) -> list[Destination]:
        """A/AAAA of one host (IPv4 first, then IPv6), or the literal itself."""
        lit = _literal(host)
        if lit is not None:
            return [Destination(host, lit, port)]
        v4 = self.resolver.lookupAddress(host)
        v6 = self.resolver.lookupIPV6Address(host)
        results = await defer.DeferredList([v4, v6], consumeErrors=True)
        addrs: list[str] = []
        failures: list[Exception] = []
        for ok, value in results:
            if not ok:
                failures.append(value.value)
                continue
            for rr in value[0]:
                if rr.type == dns.A:
                    addrs.append(rr.payload.dottedQuad())
                elif rr.type == dns.AAAA:
                    addrs.append(str(ipaddress.IPv6Address(rr.payload.address)))
        if not addrs:
            if failures and all(isinstance(f, error.DNSNameError) for f in failures):
                raise _dns_failure(host, failures[0], "A/AAAA")
            if failures:
                raise _dns_failure(host, failures[0], "A/AAAA")
            raise DeliveryFailure("5.1.2", f"host {host} has no A or AAAA record")
        return [Destination(host.rstrip(".").lower(), a, port) for a in addrs]
