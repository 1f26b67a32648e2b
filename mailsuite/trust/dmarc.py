"""DMARC (RFC 7489): policy record discovery, identifier alignment and the resulting policy.

Discovery (§6.6.3) looks for ``_dmarc.<From domain>`` and, when that has no record, for
``_dmarc.<organizational domain>`` (see `orgdomain` for the built-in public-suffix rules).
Alignment (§3.1) compares the From: domain with the SPF-authenticated MAIL FROM domain and with
the d= of each passing DKIM signature, strictly (equal) or relaxed (same organizational
domain).  The requested policy is p=, or sp= for a subdomain whose record was found at the
organizational domain (§6.3).  pct= (§6.6.4) samples: an unsampled failure gets the next
weaker policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from twisted.internet import defer

from mailsuite.trust.orgdomain import organizational_domain
from mailsuite.trust.resolver import DnsLookup, DnsTempError

POLICIES = ("none", "quarantine", "reject")


class DmarcRecordError(Exception):
    """The TXT record is not a usable DMARC record."""


@dataclass(frozen=True)
class DmarcRecord:
    p: str
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass(frozen=True)
class DmarcResult:
    """`result` is pass, fail, none (no policy), temperror or permerror (RFC 8601 §2.7.x).

    `policy` is what the domain asks for this message after pct sampling: none, quarantine or
    reject (always "none" unless result is "fail").  `requested` is the published p/sp value.
    """

    result: str
    from_domain: str
    policy: str = "none"
    requested: str = "none"
    reason: str = ""


def _tags(text: str) -> list[tuple[str, str]]:
    # RFC 7489 §6.4: tag-value pairs separated by ";", whitespace around them allowed.
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise DmarcRecordError(f"malformed tag {part!r}")
        out.append((name.strip().lower(), value.strip()))
    return out


def is_dmarc_record(txt: bytes) -> bool:
    """§6.6.3 step 3: records that do not start with "v=DMARC1" are discarded."""
    # The tag name is case-insensitive, the value "DMARC1" exact (§6.4 ABNF).
    name, eq, value = txt.split(b";", 1)[0].partition(b"=")
    return bool(eq) and name.strip().lower() == b"v" and value.strip() == b"DMARC1"


def parse_record(text: str) -> DmarcRecord:
    """Parse a DMARC record; raises DmarcRecordError when no policy can be derived."""
    tags = _tags(text)
    if not tags or tags[0] != ("v", "DMARC1"):
        raise DmarcRecordError("v=DMARC1 must come first")
    values = dict(tags)
    p = values.get("p", "").lower()
    if p not in POLICIES:
        # §6.6.3 step 6: an invalid or missing p= with a valid rua= means p=none.
        if "rua" in values:
            p = "none"
        else:
            raise DmarcRecordError(f"invalid p={values.get('p')!r}")
    sp = values.get("sp", "").lower() or None
    if sp is not None and sp not in POLICIES:
        sp = None  # §6.3: an invalid sp= is ignored (p= applies)
    adkim = values.get("adkim", "r").lower()
    aspf = values.get("aspf", "r").lower()
    pct_text = values.get("pct", "100")
    pct = int(pct_text) if pct_text.isdigit() else 100
    return DmarcRecord(
        p=p,
        sp=sp,
        adkim=adkim if adkim in ("r", "s") else "r",
        aspf=aspf if aspf in ("r", "s") else "r",
        pct=min(pct, 100),
    )


def aligned(identifier: str, from_domain: str, mode: str) -> bool:
    """§3.1: strict means equal; relaxed means the same organizational domain."""
    a = identifier.rstrip(".").lower()
    b = from_domain.rstrip(".").lower()
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


async def _record_at(lookup: DnsLookup, domain: str) -> list[bytes]:
    txts = await lookup(f"_dmarc.{domain}", "TXT")
    return [t for t in txts if is_dmarc_record(t)]


async def discover(lookup: DnsLookup, from_domain: str) -> tuple[DmarcRecord, bool] | None:
    """§6.6.3: the record for `from_domain` and whether it came from the organizational domain.

    Returns None when no policy applies; raises DnsTempError and DmarcRecordError.
    """
    from_domain = from_domain.rstrip(".").lower()
    records = await _record_at(lookup, from_domain)
    inherited = False
    if not records:
        org = organizational_domain(from_domain)
        if org == from_domain:
            return None
        records = await _record_at(lookup, org)
        inherited = True
    if not records:
        return None
    if len(records) > 1:
        return None  # §6.6.3 step 5: several records, DMARC is not applied
    try:
        text = records[0].decode("ascii")
    except UnicodeDecodeError:
        raise DmarcRecordError("non-ASCII DMARC record") from None
    return parse_record(text), inherited


def _weaker(policy: str) -> str:
    return {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")


async def _evaluate(
    lookup: DnsLookup,
    from_domain: str,
    spf_domain: str | None,
    dkim_domains: list[str],
    sample: float | None,
) -> DmarcResult:
    try:
        found = await discover(lookup, from_domain)
    except DnsTempError as e:
        return DmarcResult("temperror", from_domain, reason=str(e))
    except DmarcRecordError as e:
        return DmarcResult("permerror", from_domain, reason=str(e))
    if found is None:
        return DmarcResult("none", from_domain, reason="no DMARC record")
    record, inherited = found
    requested = record.sp if (inherited and record.sp) else record.p
    if spf_domain and aligned(spf_domain, from_domain, record.aspf):
        return DmarcResult("pass", from_domain, requested=requested, reason="SPF aligned")
    for d in dkim_domains:
        if aligned(d, from_domain, record.adkim):
            return DmarcResult("pass", from_domain, requested=requested, reason="DKIM aligned")
    policy = requested
    # §6.6.4: pct applies the policy to that share of failing mail; the rest gets the next
    # weaker policy (reject becomes quarantine, quarantine becomes none).
    roll = random.random() if sample is None else sample
    if record.pct < 100 and roll * 100 >= record.pct:
        policy = _weaker(policy)
    return DmarcResult(
        "fail", from_domain, policy=policy, requested=requested, reason="no aligned pass"
    )


def evaluate(
    lookup: DnsLookup,
    from_domain: str,
    spf_domain: str | None,
    dkim_domains: list[str],
    sample: float | None = None,
) -> defer.Deferred[DmarcResult]:
    """DMARC for one From: domain; never errbacks.

    `spf_domain` is the MAIL FROM (or HELO) domain when SPF passed, else None; `dkim_domains`
    are the d= values of the DKIM signatures that passed.  `sample` fixes the pct roll (tests).
    """
    return defer.Deferred.fromCoroutine(
        _evaluate(lookup, from_domain, spf_domain, dkim_domains, sample)
    )
