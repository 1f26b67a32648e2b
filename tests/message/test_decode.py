"""mailsuite.message decoding: transfer encodings and the text of parts."""

from __future__ import annotations

import pytest

from mailsuite.message.content import MessageContent
from mailsuite.message.decode import UnknownTransferEncoding, decode_transfer
from mailsuite.message.structure import find_part
from mailsuite.message.text import part_text
from tests.imap import msg_fixtures as F


def test_decode_transfer_tolerates_broken_base64_and_qp():
    assert decode_transfer(b"aGVs\r\nbG8=", "base64") == b"hello"
    assert decode_transfer(b"aGVsbG8", "BASE64") == b"hello"  # missing padding
    assert decode_transfer(b"!!!", "base64") == b""
    assert decode_transfer(b"a=3Db=\r\nc", "quoted-printable") == b"a=bc"
    with pytest.raises(UnknownTransferEncoding):
        decode_transfer(b"x", "x-uuencode", strict=True)


def test_part_text_decodes_transfer_encoding_and_charset():
    c = MessageContent(F.BASE64_TEXT)
    assert part_text(c.wire(), c.tree()) == "Hello Zebracorn and Grüße"
    n = MessageContent(F.NESTED)
    assert part_text(n.wire(), find_part(n.tree(), (1, 1))) == "Café au lait"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        # RFC 2045 §6.7 rule 3: white space at a line end is deleted, so "=" followed by
        # white space is a soft line break (rule 5)
        (b"soft = \r\nbreak", b"soft break"),
        (b"soft =\t\nbreak", b"soft break"),
        (b"tab\t\r\nend ", b"tab\r\nend"),
        (b"spaces   \nend\t", b"spaces\nend"),
        # encoded white space stays, and so does white space inside a line
        (b"kept =20\r\nin=20 the middle", b"kept  \r\nin  the middle"),
    ],
)
def test_quoted_printable_drops_white_space_at_line_ends(body, text):
    assert decode_transfer(body, "quoted-printable") == text
