"""The shared SASL dialogue: events in (mechanism, initial response, client lines), outcomes out."""

from __future__ import annotations

import base64

import pytest
from twisted.internet import defer

from mailsuite import sasl
from mailsuite.accounts.checker import AuthFailed
from tests.conftest import DEFAULT_PASSWORD, on_reactor

ALICE = "alice@example.test"


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def dialogue(plaintext_allowed: bool = True, authenticator=None) -> sasl.SaslDialogue:
    return sasl.SaslDialogue(
        authenticator, "192.0.2.1", "test", plaintext_allowed=plaintext_allowed
    )


def test_rfc4616_plain_initial_response_is_ready_at_once():
    d = dialogue()
    out = d.start("plain", b64(b"\0alice@example.test\0pw"))
    assert out == sasl.Ready(sasl.Credentials("", ALICE, "pw"))
    assert not d.waiting


def test_rfc4954_equals_sign_is_an_empty_initial_response():
    # An empty PLAIN message is malformed; what matters is that "=" reached the mechanism.
    assert dialogue().start("PLAIN", "=") == sasl.BadResponse("malformed PLAIN response")


def test_plain_without_initial_response_gets_an_empty_challenge():
    d = dialogue()
    out = d.start("PLAIN")
    assert out == sasl.SendChallenge(b"") and out.encoded == b""
    assert d.waiting
    assert d.respond(b64(b"\0alice@example.test\0pw")) == sasl.Ready(
        sasl.Credentials("", ALICE, "pw")
    )


def test_login_mechanism_asks_username_then_password():
    d = dialogue()
    assert d.start("LOGIN").encoded == b"VXNlcm5hbWU6"  # "Username:"
    assert d.respond(b64(ALICE.encode())).encoded == b"UGFzc3dvcmQ6"  # "Password:"
    assert d.respond(b64(b"pw") + b"\r\n") == sasl.Ready(sasl.Credentials("", ALICE, "pw"))


def test_rfc4954_star_cancels_in_a_response_and_as_initial_response():
    d = dialogue()
    d.start("LOGIN")
    assert d.respond(b"*") == sasl.Cancelled()
    assert not d.waiting
    assert dialogue().start("PLAIN", b"*") == sasl.Cancelled()


def test_bad_base64_and_bad_utf8_end_the_exchange():
    d = dialogue()
    d.start("LOGIN")
    assert d.respond(b"not base64!") == sasl.BadEncoding()
    assert not d.waiting
    assert dialogue().start("LOGIN", b64(b"\xff")) == sasl.BadResponse("credentials are not UTF-8")


def test_empty_line_is_empty_data():
    d = dialogue()
    d.start("LOGIN")
    assert d.respond(b"") == sasl.BadResponse("empty username")


def test_unknown_mechanism_before_the_plaintext_policy():
    assert dialogue(False).start("CRAM-MD5") == sasl.UnknownMechanism("CRAM-MD5")
    assert dialogue(False).start("PLAIN", b"=") == sasl.EncryptionRequired()


def test_rfc4616_authzid_must_be_the_user_itself_in_any_case():
    own = b64(b"Alice@Example.test\0alice@example.test\0pw")
    assert isinstance(dialogue().start("PLAIN", own), sasl.Ready)
    other = b64(b"bob@example.test\0alice@example.test\0pw")
    assert dialogue().start("PLAIN", other) == sasl.IdentityRefused()


def test_respond_without_a_challenge_is_a_programming_error():
    with pytest.raises(RuntimeError):
        dialogue().respond(b"*")


def test_login_asks_the_authenticator(mail_server):
    d = dialogue(authenticator=mail_server.services.authenticator)
    ready = d.start("PLAIN", b64(f"\0{ALICE}\0{DEFAULT_PASSWORD}".encode()))
    assert on_reactor(d.login, ready.credentials) == ALICE

    def wrong():
        return defer.maybeDeferred(d.login, sasl.Credentials("", ALICE, "wrong")).addErrback(
            lambda f: f.trap(AuthFailed)
        )

    assert on_reactor(wrong) is AuthFailed
