"""URLAUTH=BINARY (RFC 5524): the extended URLFETCH over real sockets, its responses read token
by token (literal8 included) so that their syntax is checked, not only their bytes."""

from __future__ import annotations

import base64
import imaplib
import re

import pytest

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.url.conftest import ALICE, BOB
from tests.imap.url.test_urlauth import Client, append, genurlauth, rump

NULS = b"\x00\x01PNG\r\n\x1a\n\x00\x00\xff\xfe bare\rCR and bare\nLF" * 5
QP_BODY = b"Caf=C3=A9 au lait =E2=80=94 tr=C3=A8s bon  \r\nline =\r\ntwo"
QP_TEXT = "Café au lait — très bon\r\nline two".encode()
HELLO = b"Hello, world!\r\n"


def _base64_lines(data: bytes) -> bytes:
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


NULS_B64 = _base64_lines(NULS)
PARTS = [
    (
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
        QP_BODY,
    ),
    (
        b'Content-Type: application/octet-stream; name="blob.bin"\r\n'
        b'Content-Disposition: attachment; filename="blob.bin"\r\n'
        b"Content-Transfer-Encoding: base64",
        NULS_B64,
    ),
    (b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64", _base64_lines(HELLO)),
    (
        b"Content-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode",
        b"begin 644 thing\r\n#86)C\r\n`\r\nend",
    ),
    (b"Content-Type: text/plain; charset=us-ascii", b"Plain seven-bit text."),
]


def multipart(parts) -> bytes:
    return (
        b"From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: parts\r\n"
        b"Message-ID: <parts@example.test>\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        + b"".join(b"--b1\r\n" + head + b"\r\n\r\n" + body + b"\r\n" for head, body in parts)
        + b"--b1--\r\n"
    )


MESSAGE = multipart(PARTS)
DECODABLE = multipart(PARTS[:3] + PARTS[4:])  # without the part in an unknown encoding


class Lit(bytes):
    """A literal as received; `eight`: it came as a literal8 (`~{n}`)."""

    eight = False


_MARK = re.compile(rb"(~?)\{(\d+)\}$")


class Wire(Client):
    """A raw session whose responses are read as IMAP tokens: atoms (bytes; NIL as None,
    numbers as int), quoted strings (str), literals (Lit) and parenthesized lists."""

    def read_response(self) -> list:
        segments: list = []
        while True:
            line = self.line()
            m = _MARK.search(line)
            if m is None:
                segments.append(line)
                return _tokens(segments)
            segments.append(line[: m.start()])
            lit = Lit(self.exact(int(m.group(2))))
            lit.eight = bool(m.group(1))
            segments.append(lit)

    def run(self, text: bytes) -> tuple[list[list], bytes]:
        """(the untagged responses as tokens, the tagged line's text)."""
        self.send(b"u " + text + b"\r\n")
        untagged = []
        while True:
            resp = self.read_response()
            if resp[0] == b"u":
                return untagged, b" ".join(x for x in resp[1:3] if isinstance(x, bytes))
            untagged.append(resp)


def _tokens(segments: list) -> list:
    stack: list[list] = [[]]
    for seg in segments:
        if isinstance(seg, Lit):
            stack[-1].append(seg)
            continue
        i = 0
        while i < len(seg):
            c = seg[i : i + 1]
            if c == b" ":
                i += 1
            elif c == b"(":
                stack.append([])
                i += 1
            elif c == b")":
                done = stack.pop()
                stack[-1].append(done)
                i += 1
            elif c == b'"':
                j, out = i + 1, b""
                while seg[j : j + 1] != b'"':
                    if seg[j : j + 1] == b"\\":
                        j += 1
                    out += seg[j : j + 1]
                    j += 1
                stack[-1].append(out.decode())
                i = j + 1
            else:
                m = re.match(rb'[^ ()"]+', seg[i:])
                word = m.group(0)
                stack[-1].append(None if word == b"NIL" else int(word) if word.isdigit() else word)
                i += len(word)
    assert len(stack) == 1, segments
    return stack[0]


def fetched(untagged: list[list]) -> dict[str, object]:
    """URLFETCH's answer: url -> its literal (or None), or for the extended form the list of
    its (item, value) pairs in the order sent."""
    [resp] = [r for r in untagged if r[:2] == [b"*", b"URLFETCH"]]
    out: dict[str, object] = {}
    items = resp[2:]
    while items:
        url = items.pop(0)
        assert isinstance(url, str), resp
        if items and isinstance(items[0], list):
            meta = []
            while items and isinstance(items[0], list):
                pair = items.pop(0)
                assert len(pair) == 2 and isinstance(pair[0], bytes), pair
                meta.append((pair[0].decode(), pair[1]))
            out[url] = meta
        else:
            value = items.pop(0)
            assert value is None or isinstance(value, Lit), resp
            out[url] = value
    return out


@pytest.fixture
def urls(srv):
    """URLs (authuser) for the message's parts, and a reader logged in as Bob."""
    a = Client(srv)
    uid = append(a, MESSAGE)
    assert append(a, DECODABLE) == uid + 1

    def url(section: str = "", extra: str = "", uid: int = uid) -> str:
        sec = f"/;SECTION={section}" if section else ""
        return genurlauth(a, rump(ALICE, uid, "authuser", sec + extra))

    return url, Wire(srv, BOB)


def test_capability_lists_urlauth_binary_rfc5524_s3(srv):
    caps = Wire(srv).run(b"CAPABILITY")[0][0]
    assert b"URLAUTH=BINARY" in caps and b"URLAUTH" in caps


def test_binary_of_a_base64_part_with_nuls_is_a_literal8_rfc5524_s3_2(urls):
    url, b = urls
    blob = url("2")
    untagged, tagged = b.run(f'URLFETCH ("{blob}" BINARY)'.encode())
    assert tagged == b"OK URLFETCH", tagged
    [(name, value)] = fetched(untagged)[blob]
    assert name == "BINARY" and value == NULS and value.eight


def test_binary_of_a_quoted_printable_part_is_decoded_without_literal8(urls):
    url, b = urls
    text = url("1")
    untagged, tagged = b.run(f'URLFETCH ("{text}" BINARY BODYPARTSTRUCTURE)'.encode())
    assert tagged == b"OK URLFETCH"
    meta = fetched(untagged)[text]
    assert [n for n, _ in meta] == ["BINARY", "BODYPARTSTRUCTURE"]  # the order asked
    data = dict(meta)["BINARY"]
    # RFC 2045 §6.7 rules 3 and 5: trailing blanks dropped, "=" at a line end joins lines.
    assert data == QP_TEXT and not data.eight  # no NUL: an ordinary literal
    shape = dict(meta)["BODYPARTSTRUCTURE"]
    assert [x.lower() for x in shape[:2]] == ["text", "plain"]
    # What was returned, described: decoded, 8-bit text of the decoded size.
    assert shape[5].lower() == "8bit" and shape[6] == len(QP_TEXT)


def test_bodypartstructure_describes_the_data_returned_rfc5524_s4(urls):
    url, b = urls
    blob = url("2")
    untagged, _ = b.run(f'URLFETCH ("{blob}" BODYPARTSTRUCTURE BINARY)'.encode())
    meta = fetched(untagged)[blob]
    assert [n for n, _ in meta] == ["BODYPARTSTRUCTURE", "BINARY"]
    shape, data = meta[0][1], meta[1][1]
    assert [x.lower() for x in shape[:2]] == ["application", "octet-stream"]
    assert shape[2] == ["name", "blob.bin"]
    assert shape[5].lower() == "binary" and shape[6] == len(NULS) == len(data)
    # Asked alone, or with BODY, it describes the part as stored.
    untagged, _ = b.run(f'URLFETCH ("{blob}" BODYPARTSTRUCTURE BODY)'.encode())
    (_, shape), (name, body) = fetched(untagged)[blob]
    assert shape[5].lower() == "base64" and shape[6] == len(NULS_B64)
    assert name == "BODY" and body == NULS_B64 and not body.eight


def test_body_and_the_plain_forms_return_the_part_as_stored_rfc5524_s3(urls):
    url, b = urls
    text, hello, whole = url("1"), url("3"), url()
    untagged, tagged = b.run(f'URLFETCH ("{text}" BODY) ("{hello}") "{whole}"'.encode())
    assert tagged == b"OK URLFETCH"
    got = fetched(untagged)
    assert got[text] == [("BODY", QP_BODY)]
    # RFC 5524 §3: in parentheses without a parameter, a URL is fetched as RFC 4467 says.
    assert got[hello] == PARTS[2][1]
    assert got[whole] == MESSAGE


def test_base64_text_without_nul_and_a_seven_bit_part(urls):
    url, b = urls
    hello, plain = url("3"), url("5")
    untagged, _ = b.run(
        f'URLFETCH ("{hello}" BINARY BODYPARTSTRUCTURE) ("{plain}" BINARY BODYPARTSTRUCTURE)'.encode()
    )
    got = fetched(untagged)
    data, shape = (v for _, v in got[hello])
    assert data == HELLO and not data.eight
    assert shape[5].lower() == "7bit" and shape[6] == len(HELLO)
    data, shape = (v for _, v in got[plain])
    assert data == PARTS[4][1]
    assert shape[5].lower() == "7bit" and shape[6] == len(PARTS[4][1])


def test_partial_applies_to_the_decoded_data_rfc5550_s5(urls):
    url, b = urls
    blob = url("2", "/;PARTIAL=3.10")
    untagged, _ = b.run(f'URLFETCH ("{blob}" BINARY BODYPARTSTRUCTURE)'.encode())
    data, shape = (v for _, v in fetched(untagged)[blob])
    assert data == NULS[3:13]
    assert shape[6] == len(NULS)  # the part's structure, not the range's


def test_an_encoding_that_cannot_be_undone_is_binary_nil_rfc5524_s5(urls):
    url, b = urls
    thing = url("4")
    untagged, tagged = b.run(f'URLFETCH ("{thing}" BINARY BODYPARTSTRUCTURE)'.encode())
    assert tagged == b"OK URLFETCH"
    assert fetched(untagged)[thing][0] == ("BINARY", None)
    shape = fetched(untagged)[thing][1][1]
    assert shape[5].lower() == "x-uuencode"
    untagged, _ = b.run(f'URLFETCH ("{thing}" BODY)'.encode())
    assert fetched(untagged)[thing] == [("BODY", PARTS[3][1])]


def test_a_part_that_does_not_exist_answers_nil_rfc4467_s8(urls):
    url, b = urls
    missing, below_leaf, header_of_leaf = url("9"), url("2.3"), url("2.HEADER")
    good = url("3")
    untagged, tagged = b.run(
        f'URLFETCH ("{missing}" BINARY) ("{below_leaf}" BODYPARTSTRUCTURE) '
        f'("{header_of_leaf}" BODY) "{missing}" ("{good}" BINARY)'.encode()
    )
    assert tagged == b"OK URLFETCH"
    got = fetched(untagged)
    assert got[missing] is None and got[below_leaf] is None and got[header_of_leaf] is None
    assert got[good] == [("BINARY", HELLO)]


def test_the_whole_message_and_its_header(urls):
    url, b = urls
    whole, undecodable, header = url(uid=2), url(), url("HEADER")
    untagged, _ = b.run(
        f'URLFETCH ("{whole}" BINARY BODYPARTSTRUCTURE) ("{undecodable}" BINARY) '
        f'("{header}" BINARY BODYPARTSTRUCTURE)'.encode()
    )
    got = fetched(untagged)
    data, shape = (v for _, v in got[whole])
    assert data.eight and NULS in data and QP_TEXT in data and HELLO in data
    # multipart: the parts, then the subtype and the extension data (params, disposition,
    # language, location)
    assert shape[-5].lower() == "mixed"
    assert [p[5].lower() for p in shape[:4]] == ["8bit", "binary", "7bit", "7bit"]
    # One leaf that cannot be decoded, and the message cannot be returned decoded.
    assert got[undecodable] == [("BINARY", None)]
    data, shape = (v for _, v in got[header])
    assert data == MESSAGE.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    assert [x.lower() for x in shape[:2]] == ["text", "rfc822-headers"]


@pytest.mark.parametrize(
    "args",
    [
        "BINARY BODY",  # RFC 5524 §3.1: clients MUST NOT request both
        "BINARY BINARY",  # nor an item twice
        "BODYPARTSTRUCTURE XYZZY",  # an item this server does not know
        '"BINARY"',  # parameters are atoms
        "(BINARY)",
    ],
)
def test_bad_parameters_are_bad_and_fetch_nothing(urls, args):
    url, b = urls
    blob = url("2")
    untagged, tagged = b.run(f'URLFETCH "{blob}" ("{blob}" {args})'.encode())
    assert tagged.startswith(b"BAD"), tagged
    assert not [r for r in untagged if r[:2] == [b"*", b"URLFETCH"]]
    # The session goes on.
    untagged, tagged = b.run(f'URLFETCH ("{blob}" BINARY)'.encode())
    assert tagged == b"OK URLFETCH" and fetched(untagged)[blob] == [("BINARY", NULS)]


def test_empty_parentheses_are_bad(urls):
    _, b = urls
    assert b.run(b"URLFETCH ()")[1].startswith(b"BAD")


def test_imaplib_reads_the_literal8(srv, urls):
    url, _ = urls
    blob = url("2")
    imaplib.Commands.setdefault("URLFETCH", ("AUTH", "SELECTED"))
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
    try:
        c.login(BOB, DEFAULT_PASSWORD)
        typ, data = c._simple_command("URLFETCH", f'("{blob}" BINARY)')
        assert typ == "OK"
        _, items = c._untagged_response(typ, data, "URLFETCH")
        head, literal = items[0]
        assert head.endswith(b"(BINARY ~{%d}" % len(NULS)) and literal == NULS
    finally:
        c.logout()
