"""The inbound policy: SPF, DKIM and DMARC for mail arriving on the "smtp" listener.

`check_inbound` (for clients outside ``trust.skip_networks``, loopback by default) runs the three
checks (concurrently where they are independent), records them
in an Authentication-Results header and decides, by the [trust] configuration:

* DMARC fails and the From: domain asks p=reject: ``trust.dmarc_reject`` (default refuse with
  550 5.7.1); p=quarantine: ``trust.dmarc_quarantine`` (default deliver to Junk).
* SPF "fail" for MAIL FROM or HELO and no DKIM signature passes: ``trust.spf_fail`` (default
  refuse with 550 5.7.23, RFC 7372); MAIL FROM "softfail": ``trust.spf_softfail`` (accept).
* A DNS failure whose answer could change that verdict (the DMARC record lookup, an SPF or DKIM
  temperror that might have been a pass or a fail): ``trust.dns_failure`` (default 451 4.4.3,
  the sender retries later).  HELO temperror alone never defers: junk HELO names are common.
* A definite refusal wins over uncertainty (a DNS failure cannot undo an SPF -all failure
  without DKIM pass); otherwise uncertainty (451) wins over Junk, Junk over accept.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from email.utils import getaddresses

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.trust import authresults, dmarc, spf, verify
from mailsuite.trust.authresults import ResInfo
from mailsuite.trust.dkim import unfolded_headers
from mailsuite.trust.resolver import DnsLookup, build_lookup

_log = Logger(namespace="mailsuite.trust.inbound")
_LOOKUPS: dict[int, tuple[object, DnsLookup]] = {}
MAX_AUTHOR_DOMAINS = 10


@dataclass(frozen=True)
class InboundVerdict:
    """What to do with a message: accept, junk (deliver to Junk), reject or tempfail.

    For "reject" and "tempfail", `code`, `enhanced` and `text` are the SMTP reply to send after
    the final dot.  For "accept" and "junk", deliver ``verdict.apply(data)``.
    """

    action: str
    code: int = 250
    enhanced: str = "2.0.0"
    text: str = ""
    header: bytes = b""  # the Authentication-Results field to prepend
    authserv_id: str = ""

    def apply(self, data: bytes) -> bytes:
        """The message to store: forged Authentication-Results removed, ours on top."""
        stripped, removed = authresults.strip_forged(data, self.authserv_id)
        if removed:
            _log.info("removed {n} forged Authentication-Results field(s)", n=removed)
        return self.header + stripped


@functools.lru_cache(maxsize=8)
def _accepted(authserv_id: str) -> InboundVerdict:
    """The verdict for a client that is not checked (frozen, so one is shared)."""
    return InboundVerdict("accept", authserv_id=authserv_id)


def lookup_for(services) -> DnsLookup:
    """The DNS lookup function: ``services.dns_lookup`` if set, else one built from config."""
    injected = getattr(services, "dns_lookup", None)
    if injected is not None:
        return injected
    config = services.config
    cached = _LOOKUPS.get(id(config))
    if cached is None or cached[0] is not config:
        cached = (config, build_lookup(config))
        _LOOKUPS[id(config)] = cached
    return cached[1]


def skipped_client(config, client_ip: str) -> bool:
    """Clients in ``trust.skip_networks`` (loopback by default) are not checked."""
    return _skipped(tuple(config.trust.skip_networks), client_ip)


@functools.lru_cache(maxsize=1024)
def _skipped(networks: tuple[str, ...], client_ip: str) -> bool:
    """skipped_client, answered once per client address and list: every inbound message asks
    three times (junk screen, junk filter, trust checks), and parsing the address was most of
    each answer."""
    try:
        ip = spf.client_address(client_ip)
    except ValueError:
        return False
    for net in networks:
        network = _network(net)
        if ip.version == network.version and ip in network:
            return True
    return False


@functools.lru_cache(maxsize=256)
def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A skip_networks entry parsed once (each inbound message asks; parsing is most of it)."""
    return ipaddress.ip_network(text, strict=False)


def author_domains(data: bytes) -> list[str]:
    """Distinct domains of the From: addresses (RFC 7489 §6.6.1), in order."""
    domains: list[str] = []
    for line in unfolded_headers(data):
        name, _, value = line.partition(b":")
        if name.strip().lower() != b"from":
            continue
        for _display, addr in getaddresses([value.decode("utf-8", "replace")]):
            domain = addr.rpartition("@")[2].strip().lower().rstrip(".")
            if "@" in addr and domain and domain not in domains:
                domains.append(domain)
    return domains


def _linesep(data: bytes) -> bytes:
    nl = data.find(b"\n")
    return b"\r\n" if nl > 0 and data[nl - 1 : nl] == b"\r" else b"\n"


def decide(
    config,
    spf_mfrom: spf.SpfResult,
    spf_helo: spf.SpfResult,
    dkim_results: list[verify.DkimResult],
    dmarc_results: list[dmarc.DmarcResult],
) -> tuple[str, int, str, str]:
    """The policy (module docstring) as a pure function: (action, code, enhanced, text)."""
    trust = config.trust
    dkim_pass = any(r.result == "pass" for r in dkim_results)
    dkim_temp = any(r.result == "temperror" for r in dkim_results)
    verdicts: list[tuple[str, int, str, str]] = []
    uncertain: list[str] = []
    for identity, res in (("MAIL FROM", spf_mfrom), ("HELO", spf_helo)):
        action = "accept"
        if res.result == "fail":
            action = trust.spf_fail
        elif res.result == "softfail" and identity == "MAIL FROM":
            action = trust.spf_softfail
        if action == "accept" or dkim_pass:
            continue
        if dkim_temp:
            uncertain.append("DKIM key")
            continue
        # RFC 7372 §3.2: X.7.23 SPF validation failed.
        text = f"SPF {res.result} for {identity} domain {res.domain}; see RFC 7208"
        verdicts.append((action, 550, "5.7.23", text))
    if spf_mfrom.result == "temperror" and trust.spf_fail != "accept" and not dkim_pass:
        uncertain.append("SPF")
    for dm in dmarc_results:
        if dm.result == "temperror":
            uncertain.append("DMARC policy")
            continue
        if dm.result != "fail":
            continue
        action = {"reject": trust.dmarc_reject, "quarantine": trust.dmarc_quarantine}.get(
            dm.policy, "accept"
        )
        if action == "accept":
            continue
        if spf_mfrom.result == "temperror" or dkim_temp:
            uncertain.append("SPF or DKIM")
            continue
        text = f"DMARC policy of {dm.from_domain} (p={dm.requested}): no aligned SPF or DKIM pass"
        verdicts.append((action, 550, "5.7.1", text))
    for v in verdicts:
        if v[0] == "reject":
            return v
    if uncertain and trust.dns_failure == "tempfail":
        what = ", ".join(dict.fromkeys(uncertain))
        return ("tempfail", 451, "4.4.3", f"temporary DNS failure checking {what}; try later")
    for v in verdicts:
        if v[0] == "junk":
            return ("junk", 250, "2.0.0", v[3])
    return ("accept", 250, "2.0.0", "")


def results_header(
    authserv_id: str,
    mail_from: str,
    helo: str,
    spf_mfrom: spf.SpfResult,
    spf_helo: spf.SpfResult,
    dkim_results: list[verify.DkimResult],
    dmarc_results: list[dmarc.DmarcResult],
    dispositions: dict[str, str],
    linesep: bytes,
) -> bytes:
    """The Authentication-Results field (RFC 8601 §2.7) for the checks done."""
    infos: list[ResInfo] = []
    if mail_from:
        infos.append(_spf_info(spf_mfrom, "smtp.mailfrom", mail_from))
    infos.append(_spf_info(spf_helo, "smtp.helo", helo or "unknown"))
    for r in dkim_results:
        props = [("header.d", r.domain), ("header.s", r.selector)]
        if r.algorithm:
            props.append(("header.a", r.algorithm))
        if r.b:
            props.append(("header.b", r.b[:8]))
        infos.append(ResInfo("dkim", r.result, r.reason, [p for p in props if p[1]]))
    if not dkim_results:
        infos.append(ResInfo("dkim", "none"))
    for dm in dmarc_results:
        comment = dm.reason if dm.result in ("temperror", "permerror") else ""
        if dm.result in ("pass", "fail"):
            comment = f"p={dm.requested} dis={dispositions.get(dm.from_domain, 'none')}"
        infos.append(ResInfo("dmarc", dm.result, comment, [("header.from", dm.from_domain)]))
    if not dmarc_results:
        infos.append(ResInfo("dmarc", "none", "no From: domain"))
    return authresults.format_header(authserv_id, infos, linesep)


def _spf_info(res: spf.SpfResult, prop: str, value: str) -> ResInfo:
    comment = res.reason if res.result in ("temperror", "permerror") else ""
    return ResInfo("spf", res.result, comment, [(prop, value)])


async def _check(services, client_ip: str, helo: str, mail_from: str, data: bytes):
    config = services.config
    authserv_id = config.hostname
    lookup = lookup_for(services)
    spf_mfrom, spf_helo, dkim_results = await defer.gatherResults(
        [
            spf.check_mail_from(lookup, client_ip, mail_from, helo),
            spf.check_helo(lookup, client_ip, helo),
            verify.verify_all(lookup, data),
        ],
        consumeErrors=True,
    )
    # RFC 7489 §3.1.2: the SPF identifier is MAIL FROM, or HELO for a null reverse-path.
    spf_domain = None
    if spf_mfrom.result == "pass":
        spf_domain = mail_from.rpartition("@")[2] if mail_from else spf_mfrom.domain
    passing = [r.domain for r in dkim_results if r.result == "pass"]
    dmarc_results = []
    # Bound the lookups a hostile From: with many addresses can cause (RFC 7489 §6.6.1).
    for domain in author_domains(data)[:MAX_AUTHOR_DOMAINS]:
        dmarc_results.append(await dmarc.evaluate(lookup, domain, spf_domain, passing))
    action, code, enhanced, text = decide(config, spf_mfrom, spf_helo, dkim_results, dmarc_results)
    disposition = {"reject": "reject", "junk": "quarantine"}.get(action, "none")
    dispositions = {dm.from_domain: disposition for dm in dmarc_results if dm.result == "fail"}
    header = results_header(
        authserv_id,
        mail_from,
        helo,
        spf_mfrom,
        spf_helo,
        dkim_results,
        dmarc_results,
        dispositions,
        _linesep(data),
    )
    _log.info(
        "trust {action} ip={ip} from={mail_from} spf={spf} helo_spf={helo_spf} "
        "dkim={dkim} dmarc={dmarc}",
        action=action,
        ip=client_ip,
        mail_from=mail_from,
        spf=spf_mfrom.result,
        helo_spf=spf_helo.result,
        dkim=",".join(f"{r.result}:{r.domain}" for r in dkim_results) or "none",
        dmarc=",".join(f"{d.result}:{d.from_domain}" for d in dmarc_results) or "none",
    )
    return InboundVerdict(action, code, enhanced, text, header, authserv_id)


def check_inbound(
    services, client_ip: str, helo: str, mail_from: str, data: bytes
) -> defer.Deferred[InboundVerdict]:
    """SPF, DKIM and DMARC for one message received on the "smtp" listener (not submission).

    `mail_from` is the reverse-path without brackets ("" for the null sender), `helo` the
    EHLO/HELO argument, `data` the message as received (after dot-unstuffing).  Fires with an
    `InboundVerdict`; never errbacks (an unexpected error yields a 451 tempfail and a log line),
    so a bug here can delay mail but never lose or wrongly refuse it.
    """
    config = services.config
    if not config.trust.inbound_checks or skipped_client(config, client_ip):
        # Nothing to look up: answered at once, without a coroutine to drive.
        return defer.succeed(_accepted(config.hostname))
    d = defer.Deferred.fromCoroutine(_check(services, client_ip, helo, mail_from, data))

    def crashed(failure):
        _log.failure("inbound trust checks crashed", failure)
        return InboundVerdict(
            "tempfail",
            451,
            "4.3.0",
            "temporary local problem checking the message; try later",
            authserv_id=services.config.hostname,
        )

    d.addErrback(crashed)
    return d
