"""Whether a message being imported is already in the destination folder.

A message is "the same" when its Message-ID and a digest of its body match: the header may
differ (an mbox's Status lines, a Return-Path the store added), the body is what the sender
wrote. A message without a Message-ID is compared whole. Line ends are compared as LF, as the store keeps them. Counted as a multiset so that
true duplicates in the source survive a first run, and a second run adds none.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from mailsuite.message.lines import header_end
from mailsuite.store import Mailbox

Fingerprint = tuple[bytes, bytes]  # (Message-ID, SHA-256 of the body with LF line ends)


def message_id(header: bytes) -> bytes:
    """The Message-ID value of a header block (unfolded, stripped), b'' when absent."""
    value = None
    for line in header.splitlines():
        if value is not None:
            if line[:1] in (b" ", b"\t"):
                value += line.strip()
                continue
            break
        if line[:11].lower() == b"message-id:":
            value = line[11:].strip()
    return value or b""


def fingerprint(data: bytes) -> Fingerprint:
    """(Message-ID, digest of the body); without a Message-ID, the digest covers the header
    too, so that two short notes with the same text are still two messages."""
    end = header_end(data)
    msgid = message_id(data[:end])
    part = data[end:] if msgid else data
    return msgid, hashlib.sha256(part.replace(b"\r\n", b"\n").rstrip(b"\n")).digest()


def folder_fingerprints(mailbox: Mailbox, folder: str) -> Counter[Fingerprint]:
    """The fingerprints of every message a folder holds now (reads each file once)."""
    f = mailbox.folder(folder)
    f.refresh(force=True)
    counts: Counter[Fingerprint] = Counter()
    for msg in list(f.messages):
        try:
            with open(f.message_path(msg), "rb") as fh:
                counts[fingerprint(fh.read())] += 1
        except OSError:
            continue
    return counts
