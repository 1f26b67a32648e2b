"""Raw message fixtures for the message-content tests (stored form: LF line ends)."""

from __future__ import annotations

SIMPLE = b"""From: Alice Example <alice@example.test>
To: bob@example.test
Subject: Hello there
Date: Mon, 13 Nov 2023 10:00:00 +0000
Message-ID: <simple.1@example.test>

Hi Bob,
this is a test.
"""

# No Content-Type at all: RFC 2045 defaults apply.
NO_MIME = b"""Subject: plain

one
two
three
"""

NESTED = b"""From: "Doe, John" <john@example.com>
To: team: a@example.org, "Q \\"quoted\\" R" <q@example.org>;, bob@example.net
Cc: =?UTF-8?Q?J=C3=BCrgen?= <j@example.de>
Subject: =?UTF-8?B?w6nDqQ==?= nested
 folded
Date: Tue, 14 Nov 2023 09:30:00 +0100
Message-ID: <nested.1@example.com>
In-Reply-To: <parent@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

This is the preamble.
--outer
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 au lait
--inner
Content-Type: text/html; charset=utf-8

<p>Caf\xc3\xa9</p>
--inner--
--outer
Content-Type: message/rfc822
Content-Description: forwarded

From: Carol <carol@example.org>
Subject: inner message
Date: Wed, 15 Nov 2023 08:00:00 +0000
Content-Type: text/plain

inner body line 1
inner body zebracorn
--outer
Content-Type: application/pdf; name*0*=utf-8''%E2%82%AC; name*1=".pdf"
Content-Disposition: attachment; filename*=utf-8''%E2%82%AC.pdf; size=10
Content-Transfer-Encoding: base64
Content-ID: <att1@example.com>
Content-Language: en, de
Content-Location: http://example.com/x.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

JVBERi0xLjQK
--outer--
This is the epilogue.
"""

MISSING_FINAL = b"""Subject: truncated
Content-Type: multipart/mixed; boundary=b1

--b1
Content-Type: text/plain

first
--b1
Content-Type: text/plain

second, never closed
"""

NO_PARTS = b"""Subject: empty multipart
Content-Type: multipart/mixed; boundary=nothere

just text, no delimiters
"""

NO_BOUNDARY = b"""Subject: no boundary param
Content-Type: multipart/mixed

body
"""

EIGHT_BIT = "Subject: Grüße aus Köln\nFrom: Jörg <joerg@example.de>\n\nHallo\n".encode()

BASE64_TEXT = b"""From: b64@example.test
Subject: encoded
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: base64

SGVsbG8gWmVicmFjb3JuIGFuZCBHcvzfZQ==
"""
# decodes to "Hello Zebracorn and Grüße" in Latin-1

BINARY_NUL = b"""Subject: nul
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

AAECAw==
--x
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-uuencode

begin 644 f
--x--
"""

DIGEST = b"""Subject: digest
Content-Type: multipart/digest; boundary=d

--d

Subject: first digest entry

entry one
--d--
"""

PREFIX_BOUNDARY = (
    b"""Subject: prefix
Content-Type: multipart/mixed; boundary=ab

--ab
Content-Type: text/plain

line with --abc inside
--abc not a delimiter
--ab"""
    + b"  \n"
    + b"""Content-Type: text/plain

two
--ab--
"""
)

HEADER_ONLY = b"Subject: no body\nFrom: x@y\n"
