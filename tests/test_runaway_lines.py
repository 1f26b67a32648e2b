"""A command line that never ends: every protocol skips an over-long line up to its end and
refuses it, and closes the connection once the line has gone on past RUNAWAY_LINE octets, so a
client cannot keep the server reading junk (or inflating a decompression bomb) for as long as it
likes.  Real sockets against a running server, before and after login, plain and compressed."""

from __future__ import annotations

import socket
import zlib

import pytest

from mailsuite.limits import RUNAWAY_LINE

PASSWORD = "runaway-password-1"

# kind: (the greeting's last line starts with, command prefix, refusal of a long line that
# ends, the text that says goodbye to an endless one, a command and its answer's start)
PROTOCOLS = {
    "smtp": (
        b"220 ",
        b"EHLO ",
        b"500 5.5.2 Error: line too long",
        b"421 4.7.0",
        (b"NOOP\r\n", b"250 "),
    ),
    "pop3": (
        b"+OK",
        b"USER ",
        b"-ERR Command line too long",
        b"-ERR Command line too long, closing",
        (b"CAPA\r\n", b"+OK"),
    ),
    "imap": (
        b"* OK",
        b"a1 LOGIN ",
        b"a1 BAD [TOOBIG]",
        b"* BYE Command line too long",
        (b"a2 NOOP\r\n", b"a2 OK"),
    ),
    "managesieve": (
        b"OK",
        b"AUTHENTICATE ",
        b'NO "Command line too long."',
        b'BYE "Command line too long."',
        (b"NOOP\r\n", b"OK"),
    ),
}


class Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buf = b""

    def until(self, start: bytes) -> bytes:
        """Lines up to and including the first one that starts with `start`."""
        seen = b""
        while True:
            while b"\n" not in self.buf:
                data = self.sock.recv(65536)
                assert data, f"closed before a line starting {start!r}; got {seen + self.buf!r}"
                self.buf += data
            line, _, self.buf = self.buf.partition(b"\n")
            seen += line + b"\n"
            if line.startswith(start):
                return seen

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        out = self.buf
        while data := self.sock.recv(65536):
            out += data
        return out

    def send_line_of(self, prefix: bytes, size: int, end: bytes = b"") -> None:
        """`prefix` and then filler up to `size` octets in all, then `end`."""
        self.sock.sendall(prefix)
        left = size - len(prefix)
        while left:
            piece = min(left, 65536)
            self.sock.sendall(b"x" * piece)
            left -= piece
        if end:
            self.sock.sendall(end)


@pytest.fixture
def server(server_factory):
    srv = server_factory(auth={"plaintext": "loopback"})
    srv.add_user("alice@example.test", PASSWORD)
    return srv


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_a_long_line_that_ends_is_refused_and_the_session_goes_on(server, kind):
    greeting, prefix, refusal, _, (command, answer) = PROTOCOLS[kind]
    c = Client(server.port(kind))
    c.until(greeting)
    # Just under the bound, then its line end: refused as too long, nothing more.
    c.send_line_of(prefix, RUNAWAY_LINE - 1000, b"\r\n")
    assert refusal in c.until(refusal[:4])
    c.sock.sendall(command)
    assert c.until(answer)


@pytest.mark.parametrize("kind", sorted(PROTOCOLS))
def test_a_line_without_end_closes_the_connection_before_login(server, kind):
    greeting, prefix, _, goodbye, _ = PROTOCOLS[kind]
    c = Client(server.port(kind))
    c.until(greeting)
    # All of it is read (the bound is crossed by the last octets), so the close is orderly.
    c.send_line_of(prefix, RUNAWAY_LINE + 100)
    assert goodbye in c.rest()


def test_a_decompression_bomb_line_closes_an_imap_session_after_login(server):
    c = Client(server.port("imap"))
    c.until(b"* OK")
    c.sock.sendall(f"a1 LOGIN alice@example.test {PASSWORD}\r\n".encode())
    assert b"a1 OK" in c.until(b"a1 ")
    c.sock.sendall(b"a2 COMPRESS DEFLATE\r\n")
    assert b"a2 OK" in c.until(b"a2 ")
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    # A few kilobytes on the wire, inflating to a command line past the bound.
    wire = deflate.compress(b"a3 SEARCH TEXT ")
    for _ in range(RUNAWAY_LINE // 65536 + 2):
        wire += deflate.compress(b"a" * 65536)
    wire += deflate.flush(zlib.Z_SYNC_FLUSH)
    assert len(wire) < RUNAWAY_LINE // 100
    c.sock.sendall(wire)
    reply = zlib.decompressobj(-15).decompress(c.rest())
    assert b"a3 BAD [TOOBIG]" in reply
    assert b"* BYE Command line too long" in reply
