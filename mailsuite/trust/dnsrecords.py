"""`mailsuite dns DOMAIN [--check]` and `mailsuite dkim keygen`: the DNS a mail domain needs.

`required_records` lists every record (MX, SPF, DKIM per selector, DMARC, MTA-STS, TLSRPT, the
RFC 6186 / RFC 8314 SRV records, autoconfig/autodiscover names); `zone_text` prints them as
zone-file lines ready to paste; `check_records` looks them up through our resolver and says which
are missing or wrong.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from twisted.internet import defer, reactor
from twisted.python.failure import Failure

from mailsuite.accounts.addresses import BadAddress, parse_domain
from mailsuite.config import Config, advertised_port
from mailsuite.sysexits import EX_CANTCREAT, EX_DATAERR, EX_NOUSER, EX_USAGE
from mailsuite.trust import mtasts
from mailsuite.trust.dkim import (
    DEFAULT_SELECTORS,
    KEY_TYPES,
    DkimKeyError,
    dkim_dir,
    generate_key,
    key_paths,
    load_key,
)
from mailsuite.trust.resolver import DnsLookup, DnsTempError, build_lookup

TTL = 3600


@dataclass(frozen=True)
class DnsRecord:
    name: str  # owner name, no trailing dot
    rrtype: str  # MX TXT SRV CNAME
    value: str  # MX "10 host", SRV "prio weight port host", CNAME "host", TXT: the text itself
    purpose: str


@dataclass(frozen=True)
class CheckResult:
    record: DnsRecord
    status: (
        str  # ok | differs (a valid record of the user's own choosing) | missing | wrong | error
    )
    detail: str = ""


def report_address(config: Config, domain: str) -> str:
    return config.trust.report_address or f"postmaster@{domain}"


def dkim_records(config: Config, domain: str) -> list[DnsRecord]:
    """One TXT record per key under <data_dir>/dkim/<domain>/ (every key there is in use)."""
    folder = dkim_dir(config) / domain
    out = []
    for key_file in sorted(folder.glob("*.key")) if folder.is_dir() else []:
        try:
            key = load_key(config, domain, key_file.stem)
        except DkimKeyError:
            continue
        purpose = f"DKIM {key.key_type} key, selector {key.selector} (RFC 6376 §3.6.2)"
        out.append(DnsRecord(key.dns_name, "TXT", key.dns_value, purpose))
    return out


def required_records(config: Config, domain: str) -> list[DnsRecord]:
    """Every record `domain` needs for mailsuite to receive, send and be found by clients."""
    d = domain.lower().rstrip(".")
    host = config.public_host.rstrip(".")
    rua = f"mailto:{report_address(config, d)}"
    # MTA-STS policies and Outlook's autodiscover are fetched over HTTPS only (RFC 8461 §3.3).
    https = (
        ""
        if config.listen.https
        else "; needs HTTPS: add a [listen] https listener, or a reverse proxy serving "
        "https:// to the http listener"
    )
    recs = [
        DnsRecord(d, "MX", f"10 {host}", "mail for the domain goes to this server (RFC 5321 §5)"),
        DnsRecord(d, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for it (RFC 7208)"),
        *dkim_records(config, d),
        DnsRecord(
            f"_dmarc.{d}",
            "TXT",
            f"v=DMARC1; p={config.trust.dmarc_policy}; rua={rua}",
            "DMARC policy and aggregate reports (RFC 7489)",
        ),
        DnsRecord(
            f"_mta-sts.{d}",
            "TXT",
            mtasts.txt_record(config, d),
            "MTA-STS policy id (RFC 8461 §3.1)" + https,
        ),
        DnsRecord(f"mta-sts.{d}", "CNAME", host, "serves the MTA-STS policy over HTTPS" + https),
        DnsRecord(
            f"_smtp._tls.{d}", "TXT", f"v=TLSRPTv1; rua={rua}", "TLS failure reports (RFC 8460)"
        ),
        DnsRecord(
            f"_submissions._tcp.{d}",
            "SRV",
            f"0 1 {advertised_port(config, 'submissions')} {host}",
            "submission over TLS (RFC 8314 §5.1)",
        ),
        DnsRecord(
            f"_submission._tcp.{d}",
            "SRV",
            f"10 1 {advertised_port(config, 'submission')} {host}",
            "submission with STARTTLS (RFC 6186)",
        ),
        DnsRecord(
            f"_imaps._tcp.{d}",
            "SRV",
            f"0 1 {advertised_port(config, 'imaps')} {host}",
            "IMAP over TLS (RFC 6186)",
        ),
        DnsRecord(
            f"_pop3s._tcp.{d}",
            "SRV",
            f"10 1 {advertised_port(config, 'pop3s')} {host}",
            "POP3 over TLS, after IMAP (RFC 6186 §3.4)",
        ),
        *_sieve_records(config, d, host),
        DnsRecord(
            f"_autodiscover._tcp.{d}",
            "SRV",
            f"0 1 {advertised_port(config, 'https')} {host}",
            "Outlook autodiscover" + https,
        ),
        DnsRecord(f"autoconfig.{d}", "CNAME", host, "Thunderbird autoconfig"),
        DnsRecord(f"autodiscover.{d}", "CNAME", host, "Outlook autodiscover" + https),
    ]
    return recs


def _sieve_records(config: Config, d: str, host: str) -> list[DnsRecord]:
    """RFC 5804 §1.8: ManageSieve clients find the server by `_sieve._tcp` (when it listens)."""
    if not config.listen.managesieve:
        return []
    port = advertised_port(config, "managesieve")
    return [DnsRecord(f"_sieve._tcp.{d}", "SRV", f"0 1 {port} {host}", "ManageSieve (RFC 5804)")]


def txt_rdata(text: str) -> str:
    """A TXT value as zone-file character-strings of at most 255 octets each (RFC 1035 §3.3)."""
    chunks = [text[i : i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def zone_line(rec: DnsRecord) -> str:
    value = rec.value
    if rec.rrtype == "TXT":
        value = txt_rdata(value)
    elif rec.rrtype in ("MX", "SRV", "CNAME"):
        value += "."  # absolute target names
    return f"{rec.name}. {TTL} IN {rec.rrtype} {value}"


def zone_text(config: Config, domain: str) -> str:
    """The records as zone-file text with explanatory comments."""
    d = domain.lower().rstrip(".")
    host = config.public_host.rstrip(".")
    out = [
        f"; DNS records for {d} (mailsuite). Paste into the zone of {d}.",
        f"; {host} also needs A/AAAA records for this server, and each address a PTR back",
        f"; to {host}: many receivers refuse mail from addresses without one.",
    ]
    records = required_records(config, d)
    if not any(r.name.endswith(f"._domainkey.{d}") for r in records):
        out.append(f"; no DKIM key yet: run `mailsuite dkim keygen {d}`, then print this again.")
    for rec in records:
        out.append(f"; {rec.purpose}")
        out.append(zone_line(rec))
    out.append(f"; MTA-STS policy served at https://mta-sts.{d}/.well-known/mta-sts.txt:")
    for line in mtasts.mta_sts_policy(config, d).splitlines():
        out.append(f";   {line}")
    return "\n".join(out) + "\n"


# --- checking ------------------------------------------------------------------------------


def _norm(text: str) -> str:
    # Split and stripped rather than `\s*;\s*` substituted, which tries every blank of a
    # long run of them that no ";" follows.
    return ";".join(part.strip() for part in text.strip().split(";")).rstrip(";").lower()


def _tag(text: str, name: str) -> str | None:
    for part in text.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and key.strip().lower() == name:
            return re.sub(r"\s+", "", value)
    return None


async def _check_txt(lookup: DnsLookup, rec: DnsRecord) -> CheckResult:
    txts = [t.decode("utf-8", "replace") for t in await lookup(rec.name, "TXT")]
    version = rec.value.split(";")[0].split()[0].lower()  # v=spf1, v=DKIM1, v=DMARC1, ...
    found = [t for t in txts if t.strip().lower().startswith(version)]
    if not found:
        return CheckResult(rec, "missing")
    if len(found) > 1 and version in ("v=spf1", "v=dmarc1", "v=stsv1"):
        return CheckResult(rec, "wrong", f"{len(found)} records; there must be exactly one")
    if any(_norm(t) == _norm(rec.value) for t in found):
        return CheckResult(rec, "ok")
    if version == "v=dkim1":
        if any(_tag(t, "p") == _tag(rec.value, "p") for t in found):
            return CheckResult(rec, "ok")
        return CheckResult(rec, "wrong", f"published key differs: {found[0]!r}")
    if version == "v=stsv1":
        return CheckResult(rec, "wrong", f"stale policy id: {found[0]!r}")
    return CheckResult(rec, "differs", f"published: {found[0]!r}")


async def _check_name(lookup: DnsLookup, rec: DnsRecord) -> CheckResult:
    target = rec.value.lower().rstrip(".")
    cnames = [c.lower().rstrip(".") for c in await lookup(rec.name, "CNAME")]
    if target in cnames:
        return CheckResult(rec, "ok")
    mine = set(await lookup(rec.name, "A")) | set(await lookup(rec.name, "AAAA"))
    if not mine and not cnames:
        return CheckResult(rec, "missing")
    theirs = set(await lookup(target, "A")) | set(await lookup(target, "AAAA"))
    if mine and mine == theirs:
        return CheckResult(rec, "ok", "same addresses as the target")
    return CheckResult(rec, "wrong", f"points elsewhere: {sorted(cnames) or sorted(mine)}")


async def _check_one(lookup: DnsLookup, rec: DnsRecord) -> CheckResult:
    if rec.rrtype == "TXT":
        return await _check_txt(lookup, rec)
    if rec.rrtype == "CNAME":
        return await _check_name(lookup, rec)
    if rec.rrtype == "MX":
        host = rec.value.split()[1].lower()
        mxs = await lookup(rec.name, "MX")
        if not mxs:
            return CheckResult(rec, "missing")
        if any(h.lower().rstrip(".") == host for _p, h in mxs):
            return CheckResult(rec, "ok")
        return CheckResult(rec, "wrong", f"MX points to {', '.join(h for _p, h in mxs)}")
    if rec.rrtype == "SRV":
        _prio, _weight, port, host = rec.value.split()
        srvs = await lookup(rec.name, "SRV")
        if not srvs:
            return CheckResult(rec, "missing")
        if any(p == int(port) and t.lower().rstrip(".") == host.lower() for _a, _b, p, t in srvs):
            return CheckResult(rec, "ok")
        return CheckResult(rec, "wrong", f"found {srvs}")
    raise ValueError(rec.rrtype)  # pragma: no cover


async def _check_all(lookup: DnsLookup, records: list[DnsRecord]) -> list[CheckResult]:
    results = []
    for rec in records:
        try:
            results.append(await _check_one(lookup, rec))
        except DnsTempError as e:
            results.append(CheckResult(rec, "error", f"DNS lookup failed: {e.reason}"))
    return results


def check_records(lookup: DnsLookup, records: list[DnsRecord]) -> defer.Deferred:
    """Look every record up; fires with a list of CheckResult."""
    return defer.Deferred.fromCoroutine(_check_all(lookup, records))


def format_check(results: list[CheckResult]) -> str:
    lines = []
    for r in results:
        rec = r.record
        line = f"{r.status.upper():8} {rec.rrtype:5} {rec.name}"
        if r.status != "ok":
            want = txt_rdata(rec.value) if rec.rrtype == "TXT" else rec.value
            line += f"\n         want: {want}"
        if r.detail:
            line += f"\n         {r.detail}"
        lines.append(line)
    bad = sum(r.status in ("missing", "wrong", "error") for r in results)
    lines.append(f"{len(results) - bad} of {len(results)} records in place")
    return "\n".join(lines) + "\n"


def _run_on_reactor(make_deferred):
    """Run a Deferred-returning function to completion on a fresh reactor (CLI only)."""
    box: list = []

    def start():
        d = defer.maybeDeferred(make_deferred)
        d.addBoth(box.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


# --- command line ----------------------------------------------------------------------------


def add_dns_command(subparsers) -> None:
    s = subparsers.add_parser(
        "dns", help="print (or --check) the DNS records a domain needs (exit 1: some missing)"
    )
    s.add_argument("domain", help="a local domain")
    s.add_argument("--check", action="store_true", help="look the records up in the DNS and report")
    s.set_defaults(func=cmd_dns)


def add_dkim_command(subparsers) -> None:
    dk = subparsers.add_parser("dkim", help="DKIM signing keys").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    s = dk.add_parser("keygen", help="create a DKIM key and print its DNS record")
    s.add_argument("domain", help="the local domain the key signs for")
    s.add_argument("--selector", help="selector name (default: 'ed' / 'rsa' by key type)")
    s.add_argument(
        "--type",
        choices=(*KEY_TYPES, "both"),
        default=None,
        help="key type (default: both an ed25519 and a 2048-bit RSA key, RFC 8463 §4)",
    )
    s.set_defaults(func=cmd_dkim_keygen)


def _domain_arg(ctx) -> str | None:
    """The domain argument as the accounts keep it; None (reported) when it is none."""
    try:
        return parse_domain(ctx.args.domain)
    except BadAddress as e:
        print(f"mailsuite: {e}", file=sys.stderr)
        return None


def _is_local(ctx, domain: str) -> bool:
    configured = {d.lower().rstrip(".") for d in ctx.config.domains}
    return domain in configured or ctx.accounts.is_local_domain(domain)


def cmd_dns(ctx) -> int:
    config = ctx.config
    domain = _domain_arg(ctx)
    if domain is None:
        return EX_DATAERR
    if not _is_local(ctx, domain):
        print(
            f"mailsuite: warning: {domain} is not a local domain of this server: this server "
            f"takes no mail for it until `mailsuite domain add {domain}`",
            file=sys.stderr,
        )
    if not ctx.args.check:
        sys.stdout.write(zone_text(config, domain))
        return 0
    records = required_records(config, domain)
    lookup = build_lookup(config)
    results = _run_on_reactor(lambda: check_records(lookup, records))
    sys.stdout.write(format_check(results))
    return 1 if any(r.status in ("missing", "wrong", "error") for r in results) else 0


def cmd_dkim_keygen(ctx) -> int:
    config = ctx.config
    domain = _domain_arg(ctx)
    if domain is None:
        return EX_DATAERR
    if not _is_local(ctx, domain):
        print(f"mailsuite: {domain} is not a local domain", file=sys.stderr)
        return EX_NOUSER
    key_type = ctx.args.type or ("both" if ctx.args.selector is None else "rsa")
    types = KEY_TYPES if key_type == "both" else (key_type,)
    if ctx.args.selector and len(types) > 1:
        print("mailsuite: --selector needs --type ed25519 or --type rsa", file=sys.stderr)
        return EX_USAGE
    for t in types:
        selector = ctx.args.selector or DEFAULT_SELECTORS[t]
        try:
            key = generate_key(config, domain, selector, t)
        except FileExistsError:
            path = key_paths(config, domain, selector)[0]
            print(f"mailsuite: {path} exists; choose another --selector", file=sys.stderr)
            return EX_CANTCREAT
        except ValueError as e:
            print(f"mailsuite: {e}", file=sys.stderr)
            return EX_USAGE
        path = key_paths(config, domain, selector)[0]
        print(f"; {t} key written to {path}; publish:")
        print(zone_line(DnsRecord(key.dns_name, "TXT", key.dns_value, "")))
    return 0
