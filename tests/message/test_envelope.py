"""mailsuite.message.envelope: the envelope fields as values, Dovecot's reading of them."""

from __future__ import annotations

from mailsuite.message.addresses import MISSING_DOMAIN
from mailsuite.message.envelope import envelope
from mailsuite.message.headers import parse_fields


def env(header: bytes):
    return envelope(parse_fields(header.replace(b"\n", b"\r\n")))


def test_absent_fields_are_none_and_sender_is_not_defaulted():
    e = env(b"From: a@b.example\n\n")
    assert e.from_ == [[None, None, b"a", b"b.example"]]
    assert e.sender is None and e.reply_to is None and e.to is None
    assert e.date is None and e.subject is None and e.message_id is None


def test_last_string_field_wins_and_address_fields_add_up():
    e = env(
        b"Subject: one\nSubject: two\nTo: a@x.example\nTo: b@x.example, c\n"
        b"Message-ID: <m@x>\nIn-Reply-To: <p@x>\n\n"
    )
    assert e.subject == b"two" and not e.subject_folded
    assert [a[2] for a in e.to] == [b"a", b"b", b"c"]
    assert e.to[2][3] == MISSING_DOMAIN
    assert e.message_id == b"<m@x>" and e.in_reply_to == b"<p@x>"


def test_folded_subject_is_unfolded_squeezed_and_marked():
    e = env(b"Subject: a  long\n\tsubject  =?utf-8?q?x?=\n\n")
    assert e.subject == b"a long subject =?utf-8?q?x?="
    assert e.subject_folded
