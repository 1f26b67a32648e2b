"""Organizational domain (RFC 7489 §3.2) from a small built-in public-suffix rule set.

DMARC needs the "organizational domain": the registered name one label below a public suffix.
The full Public Suffix List is large and changes often; shipping or fetching it is out of scope
for a self-hosted server, so mailsuite uses a deliberately small rule set:

* the organizational domain is the last **two** labels (``mail.example.com`` → ``example.com``),
* or the last **three** when the last two form a known multi-part public suffix listed in
  `MULTI_PART_SUFFIXES` (``a.b.example.co.uk`` → ``example.co.uk``).

The effect of a missing entry is bounded: for an unlisted multi-part suffix such as
``example.xy.zz`` the organizational domain becomes ``xy.zz``, so relaxed alignment is looser
than intended and DMARC records are also looked for at ``_dmarc.xy.zz`` (where none exists).
Strict alignment and records published on the exact From: domain are unaffected.
"""

from __future__ import annotations

# Second-level public suffixes under country codes that register names at the third level.
_SUFFIX_TABLE = """
    # United Kingdom
    co.uk org.uk me.uk ltd.uk plc.uk net.uk ac.uk gov.uk sch.uk
    nhs.uk police.uk
    # Australia, New Zealand
    com.au net.au org.au edu.au gov.au asn.au id.au
    co.nz net.nz org.nz ac.nz govt.nz school.nz geek.nz
    # Asia
    co.jp ne.jp or.jp ac.jp go.jp ad.jp ed.jp gr.jp lg.jp
    co.kr or.kr ne.kr ac.kr go.kr
    com.cn net.cn org.cn gov.cn edu.cn ac.cn
    com.hk net.hk org.hk edu.hk gov.hk
    com.tw net.tw org.tw edu.tw gov.tw
    com.sg net.sg org.sg edu.sg gov.sg
    co.in net.in org.in firm.in gen.in ind.in ac.in gov.in
    co.id or.id ac.id go.id web.id
    com.my net.my org.my edu.my gov.my
    co.th in.th ac.th go.th or.th
    com.ph net.ph org.ph
    com.vn net.vn org.vn
    com.pk net.pk org.pk
    co.il org.il net.il ac.il gov.il
    com.tr net.tr org.tr gen.tr edu.tr gov.tr
    com.sa net.sa org.sa
    co.ae net.ae org.ae
    # Americas
    com.br net.br org.br gov.br edu.br art.br
    com.ar net.ar org.ar gob.ar
    com.mx net.mx org.mx gob.mx edu.mx
    com.co net.co org.co gov.co
    com.pe net.pe org.pe gob.pe
    co.ve com.ve
    # Africa
    co.za org.za net.za gov.za ac.za web.za
    co.ke or.ke ac.ke com.ng org.ng com.eg co.tz co.ug
    # Europe
    co.at or.at ac.at gv.at
    com.pl net.pl org.pl edu.pl gov.pl
    com.gr com.cy com.mt com.ua org.ua net.ua
    co.hu com.pt com.es org.es nom.es gob.es
    com.ru net.ru org.ru
    # Generic second-level registries
    co.com us.com uk.com eu.com
"""
MULTI_PART_SUFFIXES = frozenset(
    name
    for line in _SUFFIX_TABLE.splitlines()
    if not line.lstrip().startswith("#")
    for name in line.split()
)


def organizational_domain(domain: str) -> str:
    """The organizational domain of `domain` (lower case, no trailing dot)."""
    labels = domain.rstrip(".").lower().split(".")
    if len(labels) <= 2:
        return ".".join(labels)
    if ".".join(labels[-2:]) in MULTI_PART_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])
