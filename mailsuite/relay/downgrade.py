"""8-bit message bodies made 7-bit for servers without 8BITMIME (RFC 6152 §3).

RFC 6152 forbids sending 8-bit data to a server that did not offer 8BITMIME: the client must
convert the message or return it.  Like Postfix, we convert: every leaf MIME part whose content
is not ASCII is re-encoded, quoted-printable for text, base64 otherwise.  Header fields are left
alone (raw 8-bit headers cannot be fixed without guessing their charset).  Pure: bytes in,
bytes out; the caller runs it in a thread because it parses the whole message.
"""

from __future__ import annotations

import io
from email import encoders
from email.generator import BytesGenerator
from email.parser import BytesParser
from email.policy import compat32


def to_7bit(data: bytes) -> bytes:
    """The message with 8-bit body parts re-encoded; unchanged if there are none."""
    if data.isascii():
        return data
    msg = BytesParser(policy=compat32).parsebytes(data)
    changed = False
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
        if payload is None or cte in ("base64", "quoted-printable") or payload.isascii():
            continue
        # Line ends become LF here and CRLF again on the wire (client.encode_data).
        payload = payload.replace(b"\r\n", b"\n")
        del part["Content-Transfer-Encoding"]
        part.set_payload(payload)
        if part.get_content_maintype() == "text":
            encoders.encode_quopri(part)
        else:
            encoders.encode_base64(part)
        changed = True
    if not changed:
        return data
    out = io.BytesIO()
    # maxheaderlen=0: header fields are written back exactly as they came (no re-folding).
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg)
    return out.getvalue()
