"""Support for trust tests: a stub DNS server on loopback (twisted.names.server over an in-memory zone) for trust tests.

Every test gets an empty `StubZone`; it fills in the TXT/A/MX/... records it needs, marks names
that answer SERVFAIL (`servfail`) or never answer (`silent`), and the real twisted.names client
configured through `[trust] resolvers` queries it over UDP (TCP for truncated answers).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, reactor, threads
from twisted.names import common, dns, error, server

from mailsuite.config import config_from_dict

HOSTNAME = "mail.example.test"


def on_reactor(fn, *args, **kwargs):
    """Run fn on the reactor thread and wait for its result (Deferreds included)."""
    return threads.blockingCallFromThread(reactor, fn, *args, **kwargs)


class StubZone(common.ResolverBase):
    """In-memory authoritative data: {(name, type): [record payloads]}."""

    def __init__(self):
        super().__init__()
        self.records: dict[tuple[str, int], list] = {}
        self.failing: set[str] = set()
        self.dropping: set[str] = set()
        self.queries: list[tuple[str, int]] = []

    # -- filling ----------------------------------------------------------------------------
    def add(self, name: str, payload) -> None:
        key = (name.lower().rstrip("."), payload.TYPE)
        self.records.setdefault(key, []).append(payload)

    def txt(self, name: str, *texts: str | bytes) -> None:
        for text in texts:
            raw = text.encode() if isinstance(text, str) else text
            chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
            self.add(name, dns.Record_TXT(*chunks, ttl=60))

    def a(self, name: str, *addresses: str) -> None:
        for addr in addresses:
            self.add(name, dns.Record_A(addr, ttl=60))

    def aaaa(self, name: str, *addresses: str) -> None:
        for addr in addresses:
            self.add(name, dns.Record_AAAA(addr, ttl=60))

    def mx(self, name: str, *hosts: tuple[int, str]) -> None:
        for pref, host in hosts:
            self.add(name, dns.Record_MX(pref, host, ttl=60))

    def ptr(self, name: str, *hosts: str) -> None:
        for host in hosts:
            self.add(name, dns.Record_PTR(host, ttl=60))

    def cname(self, name: str, target: str) -> None:
        self.add(name, dns.Record_CNAME(target, ttl=60))

    def srv(self, name: str, prio: int, weight: int, port: int, target: str) -> None:
        self.add(name, dns.Record_SRV(prio, weight, port, target, ttl=60))

    def servfail(self, name: str) -> None:
        self.failing.add(name.lower().rstrip("."))

    def silent(self, name: str) -> None:
        self.dropping.add(name.lower().rstrip("."))

    def clear(self) -> None:
        self.records.clear()
        self.failing.clear()
        self.dropping.clear()
        self.queries.clear()

    # -- answering --------------------------------------------------------------------------
    def _lookup(self, name, cls, type, timeout):
        n = name.decode("ascii").lower().rstrip(".")
        self.queries.append((n, type))
        if n in self.failing:
            return defer.fail(RuntimeError("stub SERVFAIL"))  # any non-DomainError: SERVFAIL
        if n in self.dropping:
            return defer.Deferred()  # never answers: the client times out
        answers = [
            dns.RRHeader(name, p.TYPE, dns.IN, 60, p, auth=True)
            for p in self.records.get((n, type), [])
        ]
        if not answers and not any(key[0] == n for key in self.records):
            return defer.fail(error.AuthoritativeDomainError(name))  # NXDOMAIN
        return defer.succeed((answers, [], []))


class _QuietServerFactory(server.DNSServerFactory):
    """Answers SERVFAIL for the zone's failing names without logging a traceback each time."""

    def gotResolverError(self, failure, protocol, message, address):
        nx = failure.check(error.DomainError, error.AuthoritativeDomainError)
        rcode = dns.ENAME if nx else dns.ESERVER
        response = self._responseFromMessage(message=message, rCode=rcode)
        self.sendReply(protocol, response, address)


class StubDnsServer:
    def __init__(self):
        self.zone = StubZone()
        factory = _QuietServerFactory(authorities=[self.zone])
        factory.noisy = False
        # The same port for UDP and TCP (TCP carries truncated answers).
        for _ in range(20):
            self.udp = reactor.listenUDP(
                0, dns.DNSDatagramProtocol(controller=factory), interface="127.0.0.1"
            )
            self.port = self.udp.getHost().port
            try:
                self.tcp = reactor.listenTCP(self.port, factory, interface="127.0.0.1")
                break
            except Exception:
                self.udp.stopListening()
        else:  # pragma: no cover
            raise RuntimeError("no free port for the stub DNS server")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def trust_config(root: Path, dns_address: str, **trust):
    data = {
        "hostname": HOSTNAME,
        "domains": ["example.test"],
        "data_dir": str(root / "data"),
        "trust": {"resolvers": [dns_address], "dns_timeout": 1.0, "skip_networks": [], **trust},
    }
    return config_from_dict(data, base=root)
