"""Inbound DKIM verification (RFC 6376 §6) of every DKIM-Signature in a message.

Key records are fetched first, asynchronously, through our resolver (so DNS failures become
"temperror" and missing or revoked keys "permerror" with a reason); then dkimpy checks every
signature in one worker thread (hashing a large body must not stall the reactor), reading the
prefetched keys through its ``dnsfunc`` parameter instead of doing its own DNS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dkim as dkimpy
from dkim.util import InvalidTagValueList, parse_tag_value
from twisted.internet import defer, threads

from mailsuite.trust.resolver import DnsLookup, DnsTempError

# RFC 6376 §6.1: a verifier may limit the signatures it checks (each costs a DNS lookup).
MAX_SIGNATURES = 8


@dataclass(frozen=True)
class DkimResult:
    """One signature's outcome: pass, fail, temperror or permerror (RFC 8601 §2.7.1)."""

    result: str
    domain: str = ""  # d=
    selector: str = ""  # s=
    algorithm: str = ""  # a=
    b: str = ""  # the start of b=, to tell signatures apart (RFC 6008)
    reason: str = ""


@dataclass(frozen=True)
class _Signature:
    index: int
    tags: dict | None
    error: str = ""


def _header_fields(data: bytes) -> list[tuple[bytes, bytes]]:
    m = re.search(rb"\r?\n\r?\n", data)
    head = data[: m.start()] if m else data
    # A field's value lines are gathered and joined once (adding each continuation line to
    # the value copied it again for every line: quadratic in a long fold).
    fields: list[tuple[bytes, list[bytes]]] = []
    for line in re.split(rb"\r?\n", head):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1].append(line)
        elif b":" in line:
            name, _, value = line.partition(b":")
            fields.append((name.strip(), [value]))
    return [(n, b"\r\n".join(v)) for n, v in fields]


def signatures(data: bytes) -> list[_Signature]:
    """The DKIM-Signature fields, top first, with their tags (or why they are unusable)."""
    out = []
    sigs = [v for n, v in _header_fields(data) if n.lower() == b"dkim-signature"]
    for i, value in enumerate(sigs[:MAX_SIGNATURES]):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList as e:
            out.append(_Signature(i, None, f"malformed signature: {e}"))
            continue
        missing = [t for t in (b"v", b"a", b"b", b"bh", b"d", b"h", b"s") if t not in tags]
        if missing:
            names = ", ".join(t.decode() for t in missing)
            out.append(_Signature(i, tags, f"signature lacks {names}="))
            continue
        out.append(_Signature(i, tags))
    return out


def _text(tags: dict | None, name: bytes) -> str:
    if not tags or name not in tags:
        return ""
    return re.sub(rb"\s+", b"", tags[name]).decode("ascii", "replace")


def key_name(tags: dict) -> str:
    return f"{_text(tags, b's')}._domainkey.{_text(tags, b'd')}".lower()


def classify_key(txts: list[bytes]) -> tuple[bytes | None, str]:
    """(record, "") when usable, else (None, reason): RFC 6376 §6.1.2 / §3.6.1."""
    if not txts:
        return None, "no key record"
    record = txts[0]
    try:
        tags = parse_tag_value(record)
    except InvalidTagValueList:
        return None, "malformed key record"
    if not re.sub(rb"\s+", b"", tags.get(b"p", b"")):
        return None, "key revoked"  # §3.6.1: an empty p= means revoked
    try:
        dkimpy.evaluate_pk(b"key", record)
    except dkimpy.DKIMException as e:
        return None, f"bad key record: {e}"
    return record, ""


async def _fetch_keys(lookup: DnsLookup, sigs: list[_Signature]) -> dict[str, tuple]:
    keys: dict[str, tuple] = {}
    for sig in sigs:
        if sig.error:
            continue
        name = key_name(sig.tags)
        if name in keys:
            continue
        try:
            txts = await lookup(name, "TXT")
        except DnsTempError as e:
            keys[name] = (None, "temperror", f"key lookup failed: {e.reason}")
            continue
        record, reason = classify_key(txts)
        keys[name] = (record, "permerror" if reason else "", reason)
    return keys


def _verify_in_thread(data: bytes, sigs: list[_Signature], keys: dict) -> list[DkimResult]:
    records = {name: entry[0] for name, entry in keys.items() if entry[0] is not None}

    def dnsfunc(name, timeout=5):
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        return records.get(text.rstrip(".").lower())

    results = []
    for sig in sigs:
        common = {
            "domain": _text(sig.tags, b"d"),
            "selector": _text(sig.tags, b"s"),
            "algorithm": _text(sig.tags, b"a"),
            "b": _text(sig.tags, b"b")[:12],
        }
        if sig.error:
            results.append(DkimResult("permerror", reason=sig.error, **common))
            continue
        record, status, reason = keys[key_name(sig.tags)]
        if record is None:
            results.append(DkimResult(status, reason=reason, **common))
            continue
        try:
            ok = dkimpy.DKIM(data, minkey=1024).verify(idx=sig.index, dnsfunc=dnsfunc)
        except dkimpy.ValidationError as e:
            results.append(DkimResult("fail", reason=str(e).split(" (")[0], **common))
            continue
        except dkimpy.DKIMException as e:
            results.append(DkimResult("permerror", reason=str(e)[:100], **common))
            continue
        except Exception as e:  # dkimpy on hostile input: never crash the session
            results.append(DkimResult("permerror", reason=f"unverifiable: {e!r}"[:100], **common))
            continue
        if ok:
            results.append(DkimResult("pass", **common))
        else:
            results.append(DkimResult("fail", reason="signature did not verify", **common))
    return results


async def _verify(lookup: DnsLookup, data: bytes) -> list[DkimResult]:
    sigs = signatures(data)
    if not sigs:
        return []
    keys = await _fetch_keys(lookup, sigs)
    return await threads.deferToThread(_verify_in_thread, data, sigs, keys)


def verify_all(lookup: DnsLookup, data: bytes) -> defer.Deferred[list[DkimResult]]:
    """Verify every DKIM signature (up to MAX_SIGNATURES); [] when there is none."""
    return defer.Deferred.fromCoroutine(_verify(lookup, data))
