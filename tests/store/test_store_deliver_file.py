"""Delivery from a binary file (a large IMAP APPEND spooled to disk) is copied in pieces with
CRLF turned into LF, the sizes in the name and the index exact."""

from __future__ import annotations

import io


def test_store_copies_a_file_with_crlf_split_across_pieces(mbox):
    # A CR as the last byte of the first 1 MiB piece and its LF as the first of the next.
    body = b"x" * ((1 << 20) - 1) + b"\r\n" + b"tail\r\n"
    data = b"Subject: s\r\n\r\n"
    data = data + body[len(data) :]
    key = mbox.deliver(io.BytesIO(data), "INBOX")
    folder = mbox.folder("INBOX")
    folder.refresh(force=True)
    msg = folder.by_uid(folder.uid_of_key(key))
    stored = folder.read(msg)
    assert stored == data.replace(b"\r\n", b"\n")
    assert msg.size == len(stored)
    assert msg.wire_size == len(data)
