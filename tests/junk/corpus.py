"""A corpus of junk and legitimate messages made here, from word lists and a seeded random
generator: no downloaded data, the same messages on every run.

Both kinds share a common vocabulary (so the filter must find the words that differ), come
as plain text, HTML and base64 or quoted-printable, and carry links.
"""

from __future__ import annotations

import base64
import quopri
import random
import re
import textwrap

COMMON = (
    "the and you your this that with for have will from about today please thanks time "
    "more information week here there what when which would could should also just make "
    "know good great need want look email message new best free order offer update"
).split()
JUNK_WORDS = (
    "viagra cialis pharmacy pills discount cheap prescription meds lottery winner prize "
    "claim million dollars urgent inheritance beneficiary bitcoin crypto investment profit "
    "guaranteed returns casino bonus spins jackpot replica watches rolex luxury bargain "
    "unsubscribe limited exclusive deal act now click hurry expires credit loan approved "
    "refinance mortgage weight loss diet miracle enlarge singles dating lonely wealth "
    "congratulations selected verify account suspended password reset wire transfer"
).split()
HAM_WORDS = (
    "meeting agenda project review draft schedule tomorrow afternoon lunch dinner weekend "
    "family kids school homework birthday party photos holiday trip train ticket hotel "
    "report quarterly budget spreadsheet attached minutes notes discussion feedback "
    "patch commit branch release tests build server deploy config bug issue fixed merge "
    "garden recipe soup bread concert rehearsal choir library book chapter thesis "
    "invoice contract signature colleague department conference slides presentation"
).split()
JUNK_DOMAINS = ("cheap-meds.example", "win-big.example", "crypto-gains.example", "rx-deals.example")
HAM_DOMAINS = ("git.example.org", "docs.example.org", "school.example.net", "tickets.example.com")
JUNK_SENDERS = ("promo@deals.example", "winner@lotto.example", "support@secure-verify.example")
HAM_SENDERS = (
    "bob@example.org",
    "carol@example.net",
    "dave@work.example.com",
    "eve@family.example",
)


def _sentence(rng: random.Random, special: tuple[str, ...], share: float) -> str:
    words = []
    for _ in range(rng.randint(6, 14)):
        pool = special if rng.random() < share else COMMON
        words.append(rng.choice(pool))
    return " ".join(words).capitalize() + "."


def make_message(kind: str, n: int, seed: int = 0, size: int = 0) -> bytes:
    """Message number `n` of `kind` ("junk" or "ham"); about `size` bytes when given."""
    rng = random.Random(f"{kind}-{n}-{seed}")
    junk = kind == "junk"
    words = JUNK_WORDS if junk else HAM_WORDS
    domains = JUNK_DOMAINS if junk else HAM_DOMAINS
    sender = rng.choice(JUNK_SENDERS if junk else HAM_SENDERS)
    share = rng.uniform(0.25, 0.5)
    subject = " ".join(rng.choice(words + COMMON[:10]) for _ in range(rng.randint(3, 6)))
    if junk and rng.random() < 0.3:
        subject = subject.upper()
    paragraphs = []
    target = size or rng.randint(400, 2000)
    length = 0
    while length < target:
        para = " ".join(_sentence(rng, words, share) for _ in range(rng.randint(2, 5)))
        if rng.random() < 0.4:
            para += f" https://{rng.choice(domains)}/{rng.randint(1, 999)}"
        paragraphs.append(para)
        length += len(para) + 2
    paragraphs = [textwrap.fill(p, 76) for p in paragraphs]
    text = "\n\n".join(paragraphs)
    html = rng.random() < (0.6 if junk else 0.2)
    encoding = rng.choice(["7bit", "quoted-printable", "base64"])
    if html:
        body_text = "<html><body>" + "".join(
            f'<p>{p}\n<a href="https://{rng.choice(domains)}/go">here</a></p>\n' for p in paragraphs
        )
        body_text += "</body></html>"
        ctype = "text/html"
    else:
        body_text = text
        ctype = "text/plain"
    raw = body_text.encode()
    if encoding == "base64":
        body = base64.encodebytes(raw)
    elif encoding == "quoted-printable":
        body = quopri.encodestring(raw)
    else:
        body = raw + b"\n"
    head = (
        f"From: {sender}\n"
        f"To: alice@example.test\n"
        f"Subject: {subject}\n"
        f"Message-ID: <{kind}.{n}.{seed}@{sender.rpartition('@')[2]}>\n"
        f"Date: Sat, 05 Dec 2026 12:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: {ctype}; charset=utf-8\n"
        f"Content-Transfer-Encoding: {encoding}\n\n"
    )
    if not body.endswith(b"\n"):
        body += b"\n"  # quoted-printable output need not end with a line break
    return re.sub(rb"\r?\n", b"\r\n", head.encode() + body)


def corpus(kind: str, count: int, seed: int = 0) -> list[bytes]:
    return [make_message(kind, n, seed) for n in range(count)]
