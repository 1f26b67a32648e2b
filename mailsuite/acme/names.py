"""The names the certificate covers."""

from __future__ import annotations

from collections.abc import Iterable

from mailsuite.config import Config

# Per local domain, the names mail programs and sending servers reach the web listener by:
# MTA-STS policy (RFC 8461 §3.3), Thunderbird autoconfig, Outlook autodiscover.
WEB_PREFIXES = ("mta-sts.", "autoconfig.", "autodiscover.")


def certificate_names(config: Config, local_domains: Iterable[str]) -> list[str]:
    """`[acme] hosts` when given; else `hostname`, plus the web names of every local domain when
    an http or https listener serves them. Lower case, each once, `hostname` first."""
    if config.acme is not None and config.acme.hosts:
        wanted = list(config.acme.hosts)
    else:
        wanted = [config.hostname]
        if config.listen.http or config.listen.https:
            for domain in sorted({d.lower().rstrip(".") for d in local_domains if d}):
                wanted += [prefix + domain for prefix in WEB_PREFIXES]
    names: list[str] = []
    for name in wanted:
        name = name.lower().rstrip(".")
        if name not in names:
            names.append(name)
    return names
