"""Apple configuration profile (.mobileconfig) for one address: IMAP and SMTP, no password.

A Configuration profile whose single payload is `com.apple.mail.managed` (Apple's "Mail"
payload). It is unsigned; iOS shows "Not Verified" and asks the user for the password on
install, which is what we want: no secret ever goes into the file. Pure: settings in, bytes out.
"""

from __future__ import annotations

import plistlib
import uuid

from mailsuite.web.settings import ClientSettings

CONTENT_TYPE = b"application/x-apple-aspen-config"
# Profile UUIDs are derived from the address so that installing a fresh copy replaces the old
# profile instead of adding a second account.
_UUID_NS = uuid.UUID("7d0c5c1e-4f0b-4c39-9a55-6a7e5b0f3b21")


def _reverse_dns(host: str) -> str:
    return ".".join(reversed(host.split(".")))


def mobileconfig(settings: ClientSettings, address: str) -> bytes:
    """The XML plist of an unsigned profile for `address`."""
    ident = f"{_reverse_dns(settings.host)}.mailsuite.{address}"
    mail_payload = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{ident}.mail",
        "PayloadUUID": str(uuid.uuid5(_UUID_NS, "mail:" + address)).upper(),
        "PayloadDisplayName": address,
        "PayloadDescription": f"Mail account {address}",
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": settings.host,
        "IncomingMailServerPortNumber": settings.imaps_port,
        # Implicit TLS on both sides (RFC 8314 §3.3).
        "IncomingMailServerUseSSL": True,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": settings.host,
        "OutgoingMailServerPortNumber": settings.submissions_port,
        "OutgoingMailServerUseSSL": True,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PreventMove": False,
        "PreventAppSheet": False,
        "SMIMEEnabled": False,
        "allowMailDrop": True,
    }
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": ident,
        "PayloadUUID": str(uuid.uuid5(_UUID_NS, "profile:" + address)).upper(),
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadDescription": f"Sets up the mail account {address} on {settings.host}.",
        "PayloadOrganization": address.rpartition("@")[2],
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail_payload],
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def filename(address: str) -> str:
    """A safe download file name for the profile."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in address)
    return f"{safe}.mobileconfig"
