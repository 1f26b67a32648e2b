"""Delivery status notifications (RFC 3464) about queued mail: failure, delay, success.

Pure: an entry, the recipients to report and the original message go in, the DSN's bytes come
out.  Who gets one (RFC 3461 NOTIFY rules, no DSN to the null sender) is decided here too, so
the runner only asks and sends.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate

from mailsuite.message.lines import header_end
from mailsuite.spool.queue import QueuedRecipient, QueueEntry

# Above this the whole message is not returned, only its header (as Postfix limits bounce size).
MAX_RETURNED_MESSAGE = 1024 * 1024

FAILED = "failed"
DELAYED = "delayed"
DELIVERED = "delivered"
RELAYED = "relayed"

_XTEXT = re.compile(r"\+([0-9A-Fa-f]{2})")


def xtext_decode(text: str) -> str:
    """RFC 3461 §4: "+XX" is the octet XX; the octets are read as UTF-8 (RFC 6533)."""
    out = bytearray()
    pos = 0
    for m in _XTEXT.finditer(text):
        out += text[pos : m.start()].encode("utf-8")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += text[pos:].encode("utf-8")
    return out.decode("utf-8", "replace")


def wants_notice(rcpt: QueuedRecipient, action: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER wants nothing; no NOTIFY means failures (and, as most
    MTAs do, delays) but no success notice."""
    notify = [n.upper() for n in (rcpt.notify or [])]
    if "NEVER" in notify:
        return False
    kind = {FAILED: "FAILURE", DELAYED: "DELAY", DELIVERED: "SUCCESS", RELAYED: "SUCCESS"}[action]
    if not notify:
        return kind in ("FAILURE", "DELAY")
    return kind in notify


def should_notify(entry: QueueEntry) -> bool:
    """RFC 5321 §6.1 / RFC 3461 §6.2: never a DSN to the null sender (no bounce loops)."""
    return bool(entry.mail_from) and not entry.is_bounce


@dataclass
class Report:
    recipient: QueuedRecipient
    action: str


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def _subject(actions: set[str]) -> str:
    if FAILED in actions:
        return "Undelivered Mail Returned to Sender"
    if DELAYED in actions:
        return "Delayed Mail (still being retried)"
    return "Successful Mail Delivery Report"


def _human_text(entry: QueueEntry, reports: list[Report], hostname: str, until: float) -> str:
    actions = {r.action for r in reports}
    lines = [f"This is the mail system at host {hostname}.", ""]
    if FAILED in actions:
        lines += [
            "I'm sorry to have to inform you that your message could not",
            "be delivered to one or more recipients. It's attached below.",
        ]
    elif DELAYED in actions:
        lines += [
            "Your message could not be delivered yet to one or more recipients.",
            "It will be retried until "
            + format_datetime(datetime.fromtimestamp(until, UTC))
            + "; you do not need to send it again.",
        ]
    else:
        lines += ["Your message was successfully delivered to the destination(s) listed below."]
    lines += [""]
    for r in reports:
        detail = r.recipient.diagnostic or r.recipient.status
        lines.append(f"<{r.recipient.address}>: {r.action}: {detail}")
    return "\r\n".join(lines) + "\r\n"


def _status_fields(
    entry: QueueEntry, reports: list[Report], hostname: str, now: float, until: float
) -> str:
    # RFC 3464 §2.2: per-message fields, a blank line, then per-recipient groups.
    out = [f"Reporting-MTA: dns; {hostname}"]
    if entry.dsn_envid:
        out.append(f"Original-Envelope-Id: {xtext_decode(entry.dsn_envid)}")
    out.append(f"Arrival-Date: {formatdate(entry.created)}")
    for r in reports:
        rc = r.recipient
        out.append("")
        out.append(f"Final-Recipient: rfc822; {rc.address}")
        if rc.orcpt:
            kind, _, addr = rc.orcpt.partition(";")
            out.append(f"Original-Recipient: {kind}; {xtext_decode(addr)}")
        out.append(f"Action: {r.action}")
        status = rc.status or {FAILED: "5.0.0", DELAYED: "4.0.0"}.get(r.action, "2.0.0")
        out.append(f"Status: {status}")
        if rc.remote_mta:
            out.append(f"Remote-MTA: dns; {rc.remote_mta}")
        if rc.diagnostic and rc.diagnostic[:3].isdigit():
            out.append(f"Diagnostic-Code: smtp; {rc.diagnostic}")
        elif rc.diagnostic:
            out.append(f"Diagnostic-Code: X-mailsuite; {rc.diagnostic}")
        out.append(f"Last-Attempt-Date: {formatdate(rc.updated or now)}")
        if r.action == DELAYED:
            out.append(f"Will-Retry-Until: {formatdate(until)}")
    return "\r\n".join(out) + "\r\n"


def compose_dsn(
    entry: QueueEntry,
    reports: list[Report],
    original: bytes,
    hostname: str,
    now: float | None = None,
    max_age: float = 5 * 24 * 3600,
) -> bytes:
    """The complete DSN message (CRLF line ends) to send to ``entry.mail_from``."""
    now = time.time() if now is None else now
    until = entry.created + max_age
    boundary = f"{int(now)}.{secrets.token_hex(8)}/{hostname}"
    actions = {r.action for r in reports}
    headers = [
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{entry.mail_from}>",
        f"Subject: {_subject(actions)}",
        f"Date: {formatdate(now)}",
        f"Message-ID: <{int(now)}.{secrets.token_hex(6)}@{hostname}>",
        # RFC 3834 §5: an automatic message; responders must not answer it.
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        # RFC 6522 §3: multipart/report with report-type delivery-status.
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
    ]
    parts = [
        "\r\n".join(headers) + "\r\n\r\nThis is a MIME-encapsulated message.\r\n",
        f"--{boundary}\r\nContent-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        + _human_text(entry, reports, hostname, until),
        f"--{boundary}\r\nContent-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        + _status_fields(entry, reports, hostname, now, until),
    ]
    body = b"".join(p.encode("utf-8") for p in parts)
    # RFC 3461 §4.3: RET=HDRS returns the header only; success notices too (§6.2 suggests
    # not returning content the sender already has); otherwise the full message if small.
    full = (
        entry.dsn_ret != "HDRS"
        and actions <= {FAILED, DELAYED}
        and FAILED in actions
        and len(original) <= MAX_RETURNED_MESSAGE
    )
    if full:
        returned = _crlf(original)
        if not returned.endswith(b"\r\n"):
            returned += b"\r\n"
        third = b"Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n"
    else:
        returned = _crlf(original[: header_end(original)])
        third = b"Content-Description: Message Headers\r\nContent-Type: text/rfc822-headers\r\n"
    body += f"--{boundary}\r\n".encode() + third + b"\r\n" + returned
    body += f"\r\n--{boundary}--\r\n".encode()
    return body
