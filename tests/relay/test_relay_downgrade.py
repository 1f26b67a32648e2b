"""RFC 6152 §3: 8-bit bodies are converted before going to a server without 8BITMIME."""

import email
import email.policy

from mailsuite.relay.downgrade import to_7bit
from tests.relay.relay_support import in_reactor

TEXT = "Grüße aus Köln\r\n.\r\nZweite Zeile: naïve café\r\n"


def test_plain_text_becomes_quoted_printable():
    raw = (
        "From: a@example.test\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + TEXT
    ).encode()
    out = to_7bit(raw)
    assert out.isascii()
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["Subject"] == "x" and msg["From"] == "a@example.test"
    assert msg.get_content().replace("\r\n", "\n") == TEXT.replace("\r\n", "\n")


def test_multipart_only_8bit_leaves_change():
    raw = (
        (
            'From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n'
            "\r\n--b\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nplain ascii\r\n"
            "--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            + TEXT
            + "--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        ).encode()
        + bytes(range(128, 256))
        + b"\r\n--b--\r\n"
    )
    out = to_7bit(raw)
    assert out.isascii()
    msg = email.message_from_bytes(out, policy=email.policy.default)
    ascii_part, text_part, bin_part = msg.iter_parts()
    assert ascii_part.get_content().strip() == "plain ascii"
    assert "Content-Transfer-Encoding" not in ascii_part
    assert text_part["Content-Transfer-Encoding"] == "quoted-printable"
    # RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary.
    assert text_part.get_content().replace("\r\n", "\n") == TEXT.replace("\r\n", "\n").rstrip()
    assert bin_part["Content-Transfer-Encoding"] == "base64"
    assert bin_part.get_content().rstrip(b"\r\n") == bytes(range(128, 256))


def test_ascii_message_untouched():
    raw = b"Subject: x\r\n\r\nhello\r\n"
    assert to_7bit(raw) is raw


def test_client_converts_for_server_without_8bitmime(sink):
    from mailsuite.relay.client import SessionParams, Timeouts, connect
    from mailsuite.relay.mx import Destination
    from mailsuite.spool.queue import QueuedRecipient

    sink.script.extensions = ["PIPELINING"]
    raw = ("Subject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + TEXT).encode()
    params = SessionParams("h.test", "none", Timeouts(command=2, data_end=2))

    async def go():
        conn = await connect(Destination("s", "127.0.0.1", sink.port), params)
        out = await conn.send_message("a@example.test", [QueuedRecipient("r@x.test")], raw)
        await conn.quit()
        return out

    (o,) = in_reactor(go)
    assert o.result == "delivered"
    (t,) = sink.transactions
    assert t.data.isascii() and b"quoted-printable" in t.data
    assert sink.mail_lines == ["MAIL FROM:<a@example.test>"]
