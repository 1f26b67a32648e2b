"""Binary parts re-encoded for a line-oriented store (RFC 3516 §4.3)."""

from __future__ import annotations

import base64

from mailsuite.message.binary import armour_binary_parts, needs_armour
from mailsuite.message.decode import decode_transfer
from mailsuite.message.structure import iter_leaves, parse_message


def test_text_messages_are_left_alone():
    raw = b"Subject: x\r\n\r\nline one\r\nline two\r\n"
    assert not needs_armour(raw)
    assert armour_binary_parts(raw) is raw


def test_a_single_part_binary_body_becomes_base64_and_decodes_back():
    body = b"\x00a\rb\nc\r\n"
    raw = b"Subject: x\r\nContent-Transfer-Encoding: binary\r\n\r\n" + body
    out = armour_binary_parts(raw)
    assert b"binary" not in out.lower().split(b"\r\n\r\n")[0]
    assert not needs_armour(out)
    (leaf,) = list(iter_leaves(parse_message(out)))
    assert leaf.transfer_encoding == "base64"
    assert decode_transfer(out[leaf.body_start : leaf.end], "base64") == body


def test_only_identity_encoded_leaves_are_touched():
    already = base64.b64encode(b"\x00\x00")
    raw = (
        b'Content-Type: multipart/mixed; boundary="q"\r\n\r\n'
        b"--q\r\nContent-Transfer-Encoding: base64\r\n\r\n" + already + b"\r\n"
        b"--q\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
        b"--q\r\nContent-Type: application/x\r\n\r\nraw\x00bytes\r\n--q--\r\n"
    )
    out = armour_binary_parts(raw)
    leaves = list(iter_leaves(parse_message(out)))
    assert [leaf.transfer_encoding for leaf in leaves] == ["base64", "7bit", "base64"]
    assert out[leaves[0].body_start : leaves[0].end] == already
    assert decode_transfer(out[leaves[2].body_start : leaves[2].end], "base64") == b"raw\x00bytes"
