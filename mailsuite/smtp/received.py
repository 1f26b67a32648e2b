"""The Received: trace field of RFC 5321 §4.4, with the protocol keywords of RFC 3848/6531."""

from __future__ import annotations

import email.utils
import functools
import re
import time

_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


@functools.lru_cache(maxsize=4)
def date_of(second: int) -> str:
    """The RFC 5322 date of one second (every message received in that second shares it)."""
    return email.utils.formatdate(second, localtime=True)


def with_keyword(esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """`SMTP`, `ESMTP`, `ESMTPS`, `ESMTPA`, `ESMTPSA` (RFC 3848) or the `UTF8SMTP*` forms of
    RFC 6531 §3.7.3 when the transaction used SMTPUTF8."""
    if not esmtp:
        return "SMTP"
    base = "UTF8SMTP" if utf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    tls_info: str | None,
    recipient: str | None,
    now: float | None = None,
) -> bytes:
    """One folded Received: field, CRLF-terminated.

    The HELO name is the client's claim and goes in verbatim but sanitised (no comment or
    line breaking characters); the IP address is what we saw.  `for <rcpt>` only with a single
    recipient, so one copy does not reveal the other recipients.
    """
    name = _HELO_SAFE.sub("?", helo)[:255] or "unknown"
    stamp = date_of(int(time.time() if now is None else now))
    lines = [f"Received: from {name} ([{client_ip}])"]
    if tls_info:
        version, _, cipher = tls_info.partition(" ")
        lines.append(f"\t(using {version} with cipher {cipher or 'unknown'})")
    lines.append(f"\tby {hostname} (mailsuite) with {protocol} id {queue_id}")
    if recipient:
        lines.append(f"\tfor <{recipient}>; {stamp}")
    else:
        lines[-1] += f"; {stamp}"
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
