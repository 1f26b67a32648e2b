"""SPF (RFC 7208): record parsing, macro expansion and the check_host() evaluation.

The evaluation is pure logic over an injected lookup function (see `resolver.DnsLookup`), so
every rule can be tested against in-memory DNS data.  What is implemented:

* mechanisms ``all include a mx ptr ip4 ip6 exists`` with qualifiers ``+ - ~ ?`` (§5),
* modifiers ``redirect`` (§6.1); ``exp`` is parsed and ignored (we never build explanations),
  unknown modifiers are ignored (§6),
* macros (§7) except ``%{p}``, which expands to "unknown" (the RFC discourages it, §7.3),
* the limits of §4.6.4: at most 10 DNS-querying terms per evaluation (includes and redirects
  count across the whole tree, which also ends include loops), at most 10 MX or PTR names per
  mechanism, at most 2 void lookups,
* the results pass, fail, softfail, neutral, none, temperror and permerror (§2.6).

``ptr`` is minimal but correct: the client address's PTR names (first 10) are validated by a
forward lookup and matched against the target domain (§5.5).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.trust.resolver import DnsLookup, DnsTempError, encode_name

RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
# RFC 7208 §4.6.4
MAX_DNS_TERMS = 10
MAX_VOID_LOOKUPS = 2
MAX_NAMES_PER_MECHANISM = 10

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfPermError(Exception):
    """The record cannot be interpreted, or a limit was exceeded: result "permerror"."""


class _TempError(Exception):
    """A DNS failure during evaluation: result "temperror"."""


@dataclass(frozen=True)
class Mechanism:
    qualifier: str  # one of "+-~?"
    name: str  # all include a mx ptr ip4 ip6 exists
    domain_spec: str | None = None  # unexpanded macro-string
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None  # ip4 / ip6
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True)
class SpfRecord:
    mechanisms: tuple[Mechanism, ...]
    redirect: str | None = None
    exp: str | None = None


@dataclass(frozen=True)
class SpfResult:
    """The outcome of one check: `result` is one of `RESULTS`; `reason` says why, for logs."""

    result: str
    domain: str
    reason: str = ""


# --- parsing (§4.5, §4.6, §12 ABNF) -------------------------------------------------------

_VERSION = re.compile(r"v=spf1(?: |$)", re.IGNORECASE)
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9\-_.]*)=(.*)\Z", re.DOTALL)
_DIRECTIVE = re.compile(r"([+\-~?]?)([A-Za-z][A-Za-z0-9\-_.]*)(.*)\Z", re.DOTALL)
# [":" domain-spec] [ip4-cidr-length] ["//" ip6-cidr-length], cidr without leading zeros.
_DUAL_CIDR = re.compile(r"(?::(?P<spec>.+?))?(?:/(?P<c4>0|[1-9]\d*))?(?://(?P<c6>0|[1-9]\d*))?\Z")
# toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
# The first form's runs are possessive ("digits, a letter, then any alphanumerics" splits one
# way only): `[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*` tried every split of a long label from DNS.
_TOPLABEL = re.compile(r"(?:[0-9]*+[A-Za-z][A-Za-z0-9]*+|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])\Z")
_MACRO = re.compile(r"%(?:\{([A-Za-z])(\d*)(r?)([.\-+,/_=]*)\}|([%_\-]))", re.IGNORECASE)
_MACRO_LETTERS = set("slodiphcrtv")


def is_spf_record(txt: bytes) -> bool:
    """RFC 7208 §4.5: a record starts with "v=spf1" followed by a space or its end."""
    try:
        text = txt.decode("ascii")
    except UnicodeDecodeError:
        return txt[:7].lower() in (b"v=spf1", b"v=spf1 ")
    return bool(_VERSION.match(text))


def _check_macro_string(text: str) -> None:
    """Validate macro-string syntax (§7.1) without expanding it."""
    pos = 0
    for m in _MACRO.finditer(text):
        _check_literal(text[pos : m.start()])
        if m.group(1) and m.group(1).lower() not in _MACRO_LETTERS:
            raise SpfPermError(f"unknown macro letter in {text!r}")
        pos = m.end()
    _check_literal(text[pos:])


def _check_literal(part: str) -> None:
    # macro-literal = %x21-24 / %x26-7E: visible characters except "%".
    for ch in part:
        if ch == "%" or not 0x21 <= ord(ch) <= 0x7E:
            raise SpfPermError(f"invalid character {ch!r} in macro-string")


def _check_domain_spec(spec: str) -> None:
    """domain-spec = macro-string domain-end; domain-end is "." toplabel ["."] or a macro."""
    _check_macro_string(spec)
    if _MACRO.search(spec) and re.search(r"(?:%\{[^}]*\}|%[%_\-])\Z", spec):
        return
    body = spec[:-1] if spec.endswith(".") else spec
    head, dot, top = body.rpartition(".")
    if not dot or not head or not _TOPLABEL.match(top):
        raise SpfPermError(f"invalid domain-spec {spec!r}")


def parse_record(text: str) -> SpfRecord:
    """Parse an SPF record (starting with "v=spf1"); raises SpfPermError on any syntax error."""
    if not _VERSION.match(text):
        raise SpfPermError("not an SPF record")
    mechanisms: list[Mechanism] = []
    modifiers: dict[str, str] = {}
    for term in text[6:].split(" "):
        if not term:
            continue  # terms are separated by 1*SP
        mod = _MODIFIER.match(term)
        if mod and not _DIRECTIVE.match(term).group(3).startswith((":", "/")):
            name = mod.group(1).lower()
            value = mod.group(2)
            if name in ("redirect", "exp"):
                # §6: these modifiers MUST NOT appear more than once each.
                if name in modifiers:
                    raise SpfPermError(f"duplicate {name} modifier")
                _check_domain_spec(value)
                modifiers[name] = value
            else:
                _check_macro_string(value)  # unknown modifiers are ignored (§6)
            continue
        mechanisms.append(_parse_directive(term))
    return SpfRecord(tuple(mechanisms), modifiers.get("redirect"), modifiers.get("exp"))


def _parse_directive(term: str) -> Mechanism:
    m = _DIRECTIVE.match(term)
    if not m:
        raise SpfPermError(f"invalid term {term!r}")
    qualifier = m.group(1) or "+"
    name = m.group(2).lower()
    rest = m.group(3)
    if name == "all":
        if rest:
            raise SpfPermError(f"invalid term {term!r}")
        return Mechanism(qualifier, name)
    if name in ("include", "exists"):
        if not rest.startswith(":") or len(rest) < 2:
            raise SpfPermError(f"{name} needs a domain: {term!r}")
        _check_domain_spec(rest[1:])
        return Mechanism(qualifier, name, rest[1:])
    if name == "ptr":
        spec = None
        if rest:
            if not rest.startswith(":"):
                raise SpfPermError(f"invalid term {term!r}")
            spec = rest[1:]
            _check_domain_spec(spec)
        return Mechanism(qualifier, name, spec)
    if name in ("a", "mx"):
        cm = _DUAL_CIDR.match(rest)
        if not cm or (rest.startswith(":") and not cm.group("spec")):
            raise SpfPermError(f"invalid term {term!r}")
        spec = cm.group("spec")
        if spec is not None:
            _check_domain_spec(spec)
        c4 = int(cm.group("c4")) if cm.group("c4") is not None else 32
        c6 = int(cm.group("c6")) if cm.group("c6") is not None else 128
        if c4 > 32 or c6 > 128:
            raise SpfPermError(f"invalid prefix length in {term!r}")
        return Mechanism(qualifier, name, spec, None, c4, c6)
    if name in ("ip4", "ip6"):
        return Mechanism(qualifier, name, None, _parse_network(name, rest, term))
    raise SpfPermError(f"unknown mechanism {name!r}")


def _parse_network(name: str, rest: str, term: str):
    if not rest.startswith(":"):
        raise SpfPermError(f"{name} needs an address: {term!r}")
    addr, slash, length = rest[1:].partition("/")
    if slash and not re.fullmatch(r"0|[1-9]\d*", length):
        raise SpfPermError(f"invalid prefix length in {term!r}")
    try:
        ip = ipaddress.IPv4Address(addr) if name == "ip4" else ipaddress.IPv6Address(addr)
        bits = int(length) if slash else ip.max_prefixlen
        return ipaddress.ip_network(f"{ip}/{bits}", strict=False)
    except ValueError:
        raise SpfPermError(f"invalid address in {term!r}") from None


# --- macros (§7) --------------------------------------------------------------------------


@dataclass(frozen=True)
class MacroContext:
    sender: str  # local-part@domain (never empty: "postmaster@helo" for a null path)
    domain: str  # <domain> of the current check_host()
    ip: IPAddress
    helo: str


def _ip_macro(ip: IPAddress) -> str:
    if ip.version == 4:
        return str(ip)
    # §7.3: IPv6 "i" is the nibbles in dot format.
    return ".".join(ip.exploded.replace(":", ""))


def expand(text: str, ctx: MacroContext, exp: bool = False) -> str:
    """Expand a macro-string (§7.3); raises SpfPermError on bad syntax."""
    out: list[str] = []
    pos = 0
    for m in _MACRO.finditer(text):
        literal = text[pos : m.start()]
        _check_literal(literal)
        out.append(literal)
        pos = m.end()
        if m.group(5):
            out.append({"%": "%", "_": " ", "-": "%20"}[m.group(5)])
            continue
        out.append(_expand_one(m, ctx, exp))
    _check_literal(text[pos:])
    out.append(text[pos:])
    return "".join(out)


def _expand_one(m: re.Match, ctx: MacroContext, exp: bool) -> str:
    letter, digits, reverse, delims = m.group(1), m.group(2), m.group(3), m.group(4)
    low = letter.lower()
    local, _, sender_domain = ctx.sender.rpartition("@")
    values = {
        "s": ctx.sender,
        "l": local or "postmaster",
        "o": sender_domain,
        "d": ctx.domain,
        "i": _ip_macro(ctx.ip),
        "p": "unknown",
        "v": "in-addr" if ctx.ip.version == 4 else "ip6",
        "h": ctx.helo,
    }
    if low in ("c", "r", "t"):
        if not exp:
            raise SpfPermError(f"macro %{{{letter}}} is only allowed in exp")
        values.update(c=str(ctx.ip), r="unknown", t="0")
    if low not in values:
        raise SpfPermError(f"unknown macro letter {letter!r}")
    parts = re.split("[" + re.escape(delims or ".") + "]", values[low])
    if reverse:
        parts.reverse()
    if digits:
        n = int(digits)
        if n == 0:
            raise SpfPermError("macro digit transformer must be nonzero")
        parts = parts[-n:]
    value = ".".join(parts)
    if letter.isupper():
        value = urllib.parse.quote(value, safe="")
    return value


def _truncate(name: str) -> str:
    # §7.3: drop leading labels until the name fits in 253 characters.
    name = name.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name


# --- evaluation (§4) ----------------------------------------------------------------------


def valid_domain(domain: str) -> bool:
    """§4.3: a multi-label domain with labels of 1 to 63 octets."""
    domain = domain.rstrip(".")
    return "." in domain and encode_name(domain) is not None


class _Evaluation:
    """One SPF evaluation; the counters span includes and redirects (§4.6.4)."""

    def __init__(self, lookup: DnsLookup, ip: IPAddress, sender: str, helo: str):
        self.lookup = lookup
        self.ip = ip
        self.sender = sender
        self.helo = helo
        self.dns_terms = 0
        self.void_lookups = 0

    async def query(self, name: str, rrtype: str, count_void: bool = True) -> list:
        try:
            answers = await self.lookup(name, rrtype)
        except DnsTempError as e:
            raise _TempError(str(e)) from None
        if not answers and count_void:
            self.void_lookups += 1
            if self.void_lookups > MAX_VOID_LOOKUPS:
                raise SpfPermError("more than 2 void DNS lookups")
        return answers

    def count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > MAX_DNS_TERMS:
            raise SpfPermError("more than 10 DNS-querying terms")

    async def check_host(self, domain: str) -> tuple[str, str]:
        """check_host(<ip>, <domain>, <sender>) -> (result, reason)."""
        domain = domain.rstrip(".").lower()
        if not valid_domain(domain):
            return "none", f"{domain!r} is not a valid domain"
        try:
            txts = await self.lookup(domain, "TXT")
        except DnsTempError as e:
            raise _TempError(str(e)) from None
        records = [t for t in txts if is_spf_record(t)]
        if not records:
            return "none", f"no SPF record at {domain}"
        if len(records) > 1:
            raise SpfPermError(f"{len(records)} SPF records at {domain}")
        try:
            text = records[0].decode("ascii")
        except UnicodeDecodeError:
            raise SpfPermError(f"non-ASCII SPF record at {domain}") from None
        record = parse_record(text)
        ctx = MacroContext(self.sender, domain, self.ip, self.helo)
        for mech in record.mechanisms:
            if await self.matches(mech, ctx):
                return _QUALIFIERS[mech.qualifier], f"{domain}: matched {mech.name}"
        if record.redirect is not None:
            # §6.1: redirect counts as a DNS term; a target without a record is permerror.
            self.count_term()
            target = _truncate(expand(record.redirect, ctx))
            result, reason = await self.check_host(target)
            if result == "none":
                raise SpfPermError(f"redirect to {target}, which has no SPF record")
            return result, reason
        return "neutral", f"{domain}: no mechanism matched"

    async def matches(self, mech: Mechanism, ctx: MacroContext) -> bool:
        name = mech.name
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            return self.ip.version == mech.network.version and self.ip in mech.network
        self.count_term()
        target = _truncate(expand(mech.domain_spec, ctx)) if mech.domain_spec else ctx.domain
        if name == "include":
            result, _ = await self.check_host(target)
            # §5.2: the include table.
            if result == "pass":
                return True
            if result in ("fail", "softfail", "neutral"):
                return False
            if result == "none":
                raise SpfPermError(f"include:{target} has no SPF record")
            raise AssertionError(result)  # temperror/permerror propagate as exceptions
        if name == "a":
            return await self.address_matches(target, mech)
        if name == "mx":
            return await self.mx_matches(target, mech)
        if name == "exists":
            # §5.7: always an A query, whatever the client's address family.
            return bool(await self.query(target, "A"))
        if name == "ptr":
            return await self.ptr_matches(target)
        raise SpfPermError(f"unknown mechanism {name!r}")  # pragma: no cover

    def _address_type(self) -> str:
        return "A" if self.ip.version == 4 else "AAAA"

    def _in(self, address: str, mech: Mechanism) -> bool:
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return False
        if addr.version != self.ip.version:
            return False
        bits = mech.cidr4 if addr.version == 4 else mech.cidr6
        return self.ip in ipaddress.ip_network(f"{addr}/{bits}", strict=False)

    async def address_matches(self, target: str, mech: Mechanism) -> bool:
        addresses = await self.query(target, self._address_type())
        return any(self._in(a, mech) for a in addresses)

    async def mx_matches(self, target: str, mech: Mechanism) -> bool:
        mxs = await self.query(target, "MX")
        if len(mxs) > MAX_NAMES_PER_MECHANISM:
            raise SpfPermError(f"mx:{target} has more than 10 MX names")
        for _pref, host in sorted(mxs):
            if not host or host == ".":
                continue  # RFC 7505 null MX
            # Lookups of MX names are not "void lookups" of a term (§4.6.4 counts terms).
            addresses = await self.query(host, self._address_type(), count_void=False)
            if any(self._in(a, mech) for a in addresses):
                return True
        return False

    async def ptr_matches(self, target: str) -> bool:
        names = await self.query(self.ip.reverse_pointer, "PTR")
        target = target.lower()
        for host in names[:MAX_NAMES_PER_MECHANISM]:
            host = host.rstrip(".").lower()
            if host != target and not host.endswith("." + target):
                continue
            addresses = await self.query(host, self._address_type(), count_void=False)
            if any(_same_ip(a, self.ip) for a in addresses):
                return True
        return False


def _same_ip(address: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(address) == ip
    except ValueError:
        return False


def client_address(text: str) -> IPAddress:
    """The client IP as SPF sees it: IPv4-mapped IPv6 addresses are IPv4 (§5)."""
    ip = ipaddress.ip_address(text.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


async def _check(lookup: DnsLookup, ip: str, domain: str, sender: str, helo: str) -> SpfResult:
    try:
        address = client_address(ip)
    except ValueError:
        return SpfResult("none", domain, f"client address {ip!r} is not an IP address")
    evaluation = _Evaluation(lookup, address, sender, helo)
    try:
        result, reason = await evaluation.check_host(domain)
    except SpfPermError as e:
        return SpfResult("permerror", domain, str(e))
    except _TempError as e:
        return SpfResult("temperror", domain, str(e))
    return SpfResult(result, domain, reason)


def check_host(
    lookup: DnsLookup, ip: str, domain: str, sender: str, helo: str
) -> defer.Deferred[SpfResult]:
    """RFC 7208 §4 check_host() for one identity; never errbacks."""
    return defer.Deferred.fromCoroutine(_check(lookup, ip, domain, sender, helo))


def check_mail_from(
    lookup: DnsLookup, ip: str, mail_from: str, helo: str
) -> defer.Deferred[SpfResult]:
    """The "MAIL FROM" identity (§2.4); a null reverse-path checks postmaster@<HELO>."""
    if not mail_from:
        return check_helo(lookup, ip, helo)
    local, at, domain = mail_from.rpartition("@")
    if not at:
        return defer.succeed(SpfResult("none", "", "MAIL FROM has no domain"))
    sender = f"{local or 'postmaster'}@{domain}"
    return check_host(lookup, ip, domain, sender, helo)


def check_helo(lookup: DnsLookup, ip: str, helo: str) -> defer.Deferred[SpfResult]:
    """The "HELO" identity (§2.3); address literals and bare names give "none"."""
    name = helo.strip().rstrip(".")
    if not name or name.startswith("[") or not valid_domain(name) or _is_ip(name):
        return defer.succeed(SpfResult("none", name, "HELO is not a domain name"))
    return check_host(lookup, ip, name, f"postmaster@{name}", name)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
