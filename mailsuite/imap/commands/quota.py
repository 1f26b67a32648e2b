"""QUOTA (RFC 9208): GETQUOTAROOT, GETQUOTA and SETQUOTA over the one root "" per user."""

from __future__ import annotations

from mailsuite.imap import response as R
from mailsuite.imap.commands.mailbox import folder_exists
from mailsuite.imap.parser import ImapBad, ImapNo


def _quota_response(session) -> bytes | None:
    """The QUOTA response of the user's root "", or None when nothing is limited: RFC 9208 §5.1
    quota-list holds at least one resource, so a root without limits has no QUOTA response
    (and is no quota root at all)."""
    q = session.mailbox.quota()
    items = []
    # RFC 9208 §5.1: STORAGE in units of 1024 octets; only limited resources are listed.
    if q.limit_bytes:
        items.append(b"STORAGE %d %d" % ((q.used_bytes + 1023) // 1024, q.limit_bytes // 1024))
    if q.limit_messages:
        items.append(b"MESSAGE %d %d" % (q.used_messages, q.limit_messages))
    if not items:
        return None
    return b'* QUOTA "" (' + b" ".join(items) + b")\r\n"


def getquotaroot(session, cmd):
    if len(cmd.args) != 1 or isinstance(cmd.args[0], list):
        raise ImapBad("GETQUOTAROOT needs a mailbox name")
    name = R.decode_mailbox(cmd.args[0], session.utf8)
    if not folder_exists(session, name):
        raise ImapNo("NONEXISTENT", "No such mailbox")
    quota = _quota_response(session)
    mailbox = b"* QUOTAROOT " + R.encode_mailbox(name, session.utf8)
    if quota is None:
        # RFC 9208 §5.2: "QUOTAROOT" SP mailbox *(SP quota-root-name): no limits, no root.
        session.send(mailbox + b"\r\n")
        return
    session.send(mailbox + b' ""\r\n')
    session.send(quota)


def getquota(session, cmd):
    if len(cmd.args) != 1 or isinstance(cmd.args[0], list):
        raise ImapBad("GETQUOTA needs a quota root")
    if bytes(cmd.args[0] if isinstance(cmd.args[0], bytes) else cmd.args[0].encode()) != b"":
        raise ImapNo("NONEXISTENT", "No such quota root")
    quota = _quota_response(session)
    if quota is None:
        raise ImapNo("NONEXISTENT", "No quota root: no limits are set")
    session.send(quota)


def setquota(session, cmd):
    # RFC 9208 §4.3: limits are the administrator's (mailsuite CLI), not the user's.
    raise ImapNo("NOPERM", "Quota limits are set by the administrator")
