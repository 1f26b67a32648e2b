"""Vacation replies (RFC 5230, RFC 6131): whether a message may be answered at all (RFC 3834
§2), and the reply itself."""

from __future__ import annotations

import email.utils
import hashlib
import secrets
from datetime import datetime
from email.header import Header

from mailsuite.sieve.message_view import MessageView

# RFC 3834 §2 / RFC 5230 §4.6: senders that are programs, not people.
_ROBOT_LOCALS = ("mailer-daemon", "listserv", "majordomo", "postmaster", "noreply", "no-reply")


def refusal(view: MessageView, own: list[str]) -> str | None:
    """Why this message must get no automatic reply (None: it may get one)."""
    sender = view.input.mail_from
    if not sender:
        return "null sender"
    local = sender.rpartition("@")[0].lower()
    if local in _ROBOT_LOCALS or local.startswith("owner-") or local.endswith("-request"):
        return "sender is a list or a daemon"
    if sender.lower() in own:
        return "sender is the user"
    for value in view.values("auto-submitted"):
        # RFC 3834 §5: anything but "no" is an automatic message.
        if value.split(";")[0].strip().lower() != "no":
            return "auto-submitted"
    for value in view.values("precedence"):
        if value.strip().lower() in ("bulk", "list", "junk"):
            return "precedence " + value.strip().lower()
    for name in ("list-id", "list-unsubscribe", "list-post", "list-help", "list-owner"):
        if view.exists(name):
            return "mailing list"
    if view.exists("x-auto-response-suppress") and any(
        "oof" in v.lower() or "all" in v.lower() for v in view.values("x-auto-response-suppress")
    ):
        return "auto responses suppressed"
    # RFC 5230 §4.5: only mail addressed to the user personally is answered.
    addressed = set()
    for name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
        for raw in view.raw_values(name):
            addressed.update(a.lower() for a in view.addresses(raw))
    if not addressed & set(own):
        return "not addressed to the user"
    return None


def own_addresses(view: MessageView, extra: list[str]) -> list[str]:
    """The user's addresses: the recipient (with and without its detail), the account, and
    :addresses (RFC 5230 §4.5)."""
    own = {a.lower() for a in extra}
    for address in (view.input.recipient, view.input.mailbox):
        if not address:
            continue
        own.add(address.lower())
        local, _, domain = address.rpartition("@")
        own.add(f"{local.split('+', 1)[0]}@{domain}".lower())
    return sorted(own)


def state_key(handle: str | None, reason: str, subject: str, from_: str, mime: bool) -> str:
    """RFC 5230 §4.2: replies with the same handle count as one; without :handle, the
    arguments that make the reply are the handle."""
    basis = handle if handle is not None else f"{reason}\0{subject}\0{from_}\0{int(mime)}"
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def compose(
    view: MessageView,
    *,
    reason: str,
    subject: str | None,
    from_: str | None,
    mime: bool,
    now: datetime,
) -> bytes:
    """The reply, ready for the queue (CRLF line ends)."""
    original_subject = (view.values("subject") or [""])[0]
    if subject is None:
        # RFC 5230 §4.3: "Auto:" and the original subject.
        subject = f"Auto: {original_subject}" if original_subject else "Automated reply"
    sender = from_ or _recipient_without_detail(view.input.recipient or view.input.mailbox)
    domain = sender.rpartition("@")[2].strip(">") or "localhost"
    lines = [
        f"From: {_header_text('From', sender)}",
        f"To: <{view.input.mail_from}>",
        f"Subject: {_header_text('Subject', subject)}",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(12)}@{domain}>",
        # RFC 3834 §5: the reply says it is automatic, so that other responders stay quiet.
        "Auto-Submitted: auto-replied (vacation)",
    ]
    msgid = (view.raw_values("message-id") or [b""])[0].decode("utf-8", "replace").strip()
    if msgid:
        # RFC 5230 §5.8 / RFC 3834 §3.1.5: the reply refers to the message.
        lines.append(f"In-Reply-To: {msgid}")
        refs = (view.raw_values("references") or [b""])[0].decode("utf-8", "replace").strip()
        lines.append(f"References: {(refs + ' ' + msgid).strip()}")
    lines.append("MIME-Version: 1.0")
    if mime:
        # RFC 5230 §5.4: with :mime the reason is a MIME entity, headers included.
        entity = reason.replace("\r\n", "\n").replace("\n", "\r\n")
        return ("\r\n".join(lines) + "\r\n" + entity).encode("utf-8")
    lines.append("Content-Type: text/plain; charset=utf-8")
    lines.append("Content-Transfer-Encoding: 8bit")
    body = reason.replace("\r\n", "\n").replace("\n", "\r\n")
    if not body.endswith("\r\n"):
        body += "\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


def _recipient_without_detail(address: str) -> str:
    local, _, domain = address.rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _header_text(name: str, value: str) -> str:
    value = value.replace("\r", " ").replace("\n", " ")
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode()
