"""SCRAM-SHA-256 as a pure mechanism (RFC 5802, RFC 7677): the RFC's test vector, SASLprep, and
malformed or hostile messages, each a clean ScramError with its RFC 5802 §7 value."""

from __future__ import annotations

import base64
import random

import pytest

from mailsuite.accounts.saslprep import SaslprepError, saslprep
from mailsuite.accounts.scram_keys import ScramKeys, derive_keys
from mailsuite.sasl import SaslError
from mailsuite.sasl.scram import KeysNeeded, ScramDone, ScramError, ScramSha256
from tests.sasl.scram_client import ScramClient

# RFC 7677 §3: user "user", password "pencil".
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_keys() -> ScramKeys:
    keys = derive_keys("pencil", RFC_SALT, 4096)
    assert keys is not None
    return keys


def at_client_final(keys: ScramKeys | None = None, first: bytes = RFC_CLIENT_FIRST):
    mech = ScramSha256()
    assert mech.start(first) == KeysNeeded("user")
    mech.server_first(keys or rfc_keys(), RFC_SERVER_NONCE)
    return mech


def test_rfc7677_test_vector_key_derivation_and_whole_exchange():
    mech = ScramSha256()
    assert mech.start(None).data == b""  # no initial response: an empty challenge first
    assert mech.step(RFC_CLIENT_FIRST) == KeysNeeded("user")
    assert mech.server_first(rfc_keys(), RFC_SERVER_NONCE).data == RFC_SERVER_FIRST
    assert mech.step(RFC_CLIENT_FINAL).data == RFC_SERVER_FINAL
    assert mech.verified
    assert mech.step(b"") == ScramDone("user")


def test_rfc7677_keys_survive_their_stored_form():
    keys = rfc_keys()
    stored = keys.encode()
    assert stored.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    assert ScramKeys.decode(stored) == keys
    for bad in ("", "SCRAM-SHA-1$4096:AA==$AA==:AA==", stored[:-3], "x$y", stored + "$"):
        assert ScramKeys.decode(bad) is None


def test_independent_client_against_the_mechanism():
    client = ScramClient("user", "pencil")
    mech = ScramSha256()
    assert isinstance(mech.start(client.client_first()), KeysNeeded)
    server_first = mech.server_first(rfc_keys(), "srvnonce").data
    server_final = mech.step(client.client_final(server_first)).data
    assert client.verify(server_final)


def test_tampered_proof_is_invalid_proof():
    mech = at_client_final()
    tampered = RFC_CLIENT_FINAL[:-10] + b"AAAAAAAAA="
    with pytest.raises(ScramError, match="invalid-proof"):
        mech.step(tampered)
    assert not mech.verified
    with pytest.raises(ScramError):
        mech.step(b"")  # a failed exchange stays failed


def test_wrong_password_is_invalid_proof():
    mech = at_client_final(derive_keys("not pencil", RFC_SALT, 4096))
    with pytest.raises(ScramError, match="invalid-proof"):
        mech.step(RFC_CLIENT_FINAL)


def test_rfc5802_6_p_flag_refused_y_flag_accepted():
    with pytest.raises(ScramError, match="channel-binding-not-supported"):
        ScramSha256().start(b"p=tls-unique,,n=user,r=abc")
    mech = ScramSha256()
    assert mech.start(b"y,,n=user,r=rOprNGfwEbeRWgbNEkqO") == KeysNeeded("user")
    mech.server_first(rfc_keys(), RFC_SERVER_NONCE)
    # c= must carry the "y,," header the client sent, not "n,,".
    with pytest.raises(ScramError, match="channel-bindings-dont-match"):
        mech.step(RFC_CLIENT_FINAL)


@pytest.mark.parametrize(
    "first, error",
    [
        (b"m=x,n=user,r=abc", "other-error"),  # no gs2 header
        (b"n,,m=ext,n=user,r=abc", "extensions-not-supported"),
        (b"n,,n=us=2Xer,r=abc", "invalid-username-encoding"),
        (b"n,,n=user=,r=abc", "invalid-username-encoding"),
        (b"n,,n=,r=abc", "invalid-username-encoding"),
        (b"n,,n=user\x07,r=abc", "invalid-username-encoding"),  # SASLprep prohibits controls
        (b"n,,n=user,r=a,b", "other-error"),  # "b" is not an attribute
        (b"n,,n=user,r=", "other-error"),
        (b"n,,n=user,r=\x7f", "other-error"),
        (b"n,,r=abc,n=user", "other-error"),
        (b"n,,n=user", "other-error"),
        (b"x,,n=user,r=abc", "other-error"),
        (b"n,b=x,n=user,r=abc", "other-error"),
        (b"n,,n=us\xffer,r=abc", "invalid-encoding"),
        (b"n,,n=us\0er,r=abc", "invalid-encoding"),
        (b"n", "other-error"),
        (b"", "other-error"),
    ],
)
def test_malformed_client_first(first, error):
    with pytest.raises(ScramError) as info:
        ScramSha256().start(first)
    assert str(info.value) == error


def test_username_escapes_and_authzid():
    mech = ScramSha256()
    assert mech.start(b"n,a=a=3Db=2Cc,n=a=3Db=2Cc,r=abc") == KeysNeeded("a=b,c")
    assert mech.authzid == "a=b,c"


@pytest.mark.parametrize(
    "final, error",
    [
        (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "other-error"),
        (b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=AAAA", "other-error"),  # not the combined nonce
        (b"c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", None),
        (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AA", "invalid-encoding"),
        (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", "invalid-proof"),
        (b"c=biw,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA", "invalid-encoding"),
        (b"c=biws,p=AAAA", "other-error"),
        (b"r=x,c=biws,p=AAAA", "other-error"),
        (b"p=AAAA", "other-error"),
        (b"", "other-error"),
        (b"\xff", "invalid-encoding"),
    ],
)
def test_malformed_client_final(final, error):
    with pytest.raises(ScramError) as info:
        at_client_final().step(final)
    assert error is None or str(info.value) == error


def test_non_canonical_base64_proof_is_refused():
    # The same proof with its last character's unused bits set: b64decode accepts it.
    proof = RFC_CLIENT_FINAL.rsplit(b"p=", 1)[1]
    assert proof.endswith(b"VQ=")
    bent = RFC_CLIENT_FINAL[: -len(proof)] + proof[:-2] + b"R="
    assert base64.b64decode(bent.rsplit(b"p=", 1)[1]) == base64.b64decode(proof)
    with pytest.raises(ScramError, match="invalid-encoding"):
        at_client_final().step(bent)


def test_random_garbage_is_only_ever_a_sasl_error():
    rng = random.Random(7)
    alphabet = b"nyp=,acrmsiv0AZ+/\xff\0 =2C=3D"
    for _ in range(3000):
        msg = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        mech = ScramSha256()
        try:
            if isinstance(mech.start(msg), KeysNeeded):
                mech.server_first(rfc_keys(), "n")
                mech.step(bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 60))))
        except SaslError:
            pass


def test_a_step_out_of_turn_fails():
    mech = ScramSha256()
    mech.start(RFC_CLIENT_FIRST)
    with pytest.raises(ScramError):
        mech.step(RFC_CLIENT_FINAL)  # before server_first


@pytest.mark.parametrize(
    "text, prepared",
    [
        # RFC 4013 §3 examples.
        ("I\u00adX", "IX"),
        ("user", "user"),
        ("USER", "USER"),
        ("\u00aa", "a"),
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to SPACE
    ],
)
def test_rfc4013_saslprep_examples(text, prepared):
    assert saslprep(text) == prepared


@pytest.mark.parametrize("text", ["\u0007", "\u0627\u0031", "a\ue000", "\u0627a\u0628"])
def test_rfc4013_saslprep_prohibited(text):
    with pytest.raises(SaslprepError):
        saslprep(text)


def test_saslprep_unassigned_code_points_only_in_queries():
    unassigned = "\u0221"  # unassigned in Unicode 3.2
    assert saslprep("a" + unassigned) == "a" + unassigned
    with pytest.raises(SaslprepError):
        saslprep("a" + unassigned, stored=True)


def test_a_password_saslprep_refuses_has_no_keys_and_equivalent_passwords_share_them():
    assert derive_keys("pass\u0007word") is None
    salt = b"0123456789abcdef"
    assert derive_keys("I\u00adX", salt, 4096) == derive_keys("IX", salt, 4096)
