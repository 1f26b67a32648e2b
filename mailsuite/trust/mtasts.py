"""MTA-STS (RFC 8461): the policy file a sending server fetches, and the id that announces it.

The web listener serves `mta_sts_policy` at ``https://mta-sts.<domain>/.well-known/mta-sts.txt``;
``mailsuite dns`` prints the ``_mta-sts.<domain>`` TXT record with `policy_id`.  The id is derived
from the policy text, so it changes exactly when the policy does (§3.1: senders refetch the
policy only when the id changes).
"""

from __future__ import annotations

import hashlib

from mailsuite.config import Config


def policy_mx(config: Config) -> list[str]:
    """The MX host patterns a sender may deliver to (§3.2 "mx")."""
    return list(config.trust.mta_sts_mx) or [config.public_host]


def mta_sts_policy(config: Config, domain: str) -> str:
    """The policy file body (§3.2): "key: value" lines with CRLF endings.

    The policy is the same for every local domain (they share our MX hosts); `domain` is
    accepted so the web listener can ask per Host header and for future per-domain settings.
    """
    t = config.trust
    lines = ["version: STSv1", f"mode: {t.mta_sts_mode}"]
    lines += [f"mx: {mx}" for mx in policy_mx(config)]
    lines.append(f"max_age: {t.mta_sts_max_age}")
    return "".join(line + "\r\n" for line in lines)


def policy_id(config: Config, domain: str) -> str:
    """§3.1: id is 1 to 32 alphanumeric characters; a digest of the policy text."""
    digest = hashlib.sha256(mta_sts_policy(config, domain).encode("ascii")).hexdigest()
    return digest[:20]


def txt_record(config: Config, domain: str) -> str:
    """The value of the ``_mta-sts.<domain>`` TXT record (§3.1)."""
    return f"v=STSv1; id={policy_id(config, domain)}"
