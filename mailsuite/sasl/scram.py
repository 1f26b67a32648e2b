"""SCRAM-SHA-256 (RFC 7677, RFC 5802) on the server side, as a pure state machine.

    client-first  ->  KeysNeeded(username)   the dialogue fetches the keys (throttle first)
    server_first(keys, nonce) -> Challenge   salt, iteration count, the combined nonce
    client-final  ->  Challenge(server-final) "v=" ServerSignature, once the proof matches
    empty line    ->  ScramDone              RFC 4422 §5: additional data with success goes
                                             out as a challenge the client answers empty

Any message that does not parse, or a proof that does not match, raises ScramError carrying
the RFC 5802 §7 `e=` value.  RFC 5802 §5.1 lets a server end a failed exchange without sending
its server-final message; we do, so every protocol answers a failure as it does a wrong password.
Channel binding is not offered (no -PLUS mechanism): "n" and "y" are accepted, "p=" refused
(RFC 5802 §6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from mailsuite.accounts.saslprep import SaslprepError, saslprep
from mailsuite.accounts.scram_keys import ScramKeys
from mailsuite.sasl.steps import Challenge, SaslError

NAME = "SCRAM-SHA-256"


class ScramError(SaslError):
    """A failed exchange; `str()` is the RFC 5802 §7 server-error-value."""


@dataclass(frozen=True)
class KeysNeeded:
    """The client-first message named this user: look up their keys, then `server_first`."""

    username: str


@dataclass(frozen=True)
class ScramDone:
    """The client took the server-final message: the user is authenticated."""

    username: str


def _b64decode(text: str) -> bytes:
    """Strict base64: the canonical encoding only (padding, alphabet, no stray bits)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ScramError("invalid-encoding") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ScramError("invalid-encoding")
    return raw


def _printable(nonce: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (no comma).
    return bool(nonce) and all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce)


def _saslname(value: str) -> str:
    """RFC 5802 §5.1: "=2C" and "=3D" stand for "," and "="; any other "=" is an error."""
    out = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "=":
            code = value[i + 1 : i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ScramError("invalid-username-encoding")
            i += 3
        else:
            out.append(c)
            i += 1
    if not out:
        raise ScramError("invalid-username-encoding")
    return "".join(out)


def _attributes(message: str, names: str) -> tuple[list[str], list[str]]:
    """The values of the leading attributes `names` (in that order, each `x=`), and the rest
    (extensions, each checked to be `ALPHA "=" 1*value-char`)."""
    parts = message.split(",")
    values = []
    for i, name in enumerate(names):
        if i >= len(parts) or not parts[i].startswith(name + "="):
            raise ScramError("other-error")
        values.append(parts[i][2:])
    rest = parts[len(names) :]
    for ext in rest:
        if len(ext) < 3 or not ext[0].isascii() or not ext[0].isalpha() or ext[1] != "=":
            raise ScramError("other-error")
    return values, rest


def _text(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScramError("invalid-encoding") from None
    if "\0" in text:
        raise ScramError("invalid-encoding")
    return text


class ScramSha256:
    """One server side of an exchange; every method either advances it or raises ScramError."""

    name = NAME

    def __init__(self) -> None:
        self._state = "client-first"
        self._gs2_header = ""
        self._client_first_bare = ""
        self._nonce = ""
        self._server_first = ""
        self._keys: ScramKeys | None = None
        self.username = ""
        self.authzid = ""
        self.verified = False

    def start(self, initial: bytes | None) -> Challenge | KeysNeeded:
        if initial is None:
            # RFC 4422 §3.3: a client-first mechanism without an initial response gets an
            # empty challenge.
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | KeysNeeded | ScramDone:
        state, self._state = self._state, "failed"
        if state == "client-first":
            return self._client_first(_text(response))
        if state == "client-final":
            return self._client_final(_text(response))
        if state == "done":
            # The client's answer to the server-final message is empty (RFC 4422 §5).
            if response:
                raise ScramError("other-error")
            return ScramDone(self.username)
        raise ScramError("other-error")

    def _client_first(self, message: str) -> KeysNeeded:
        # RFC 5802 §7: gs2-header = gs2-cbind-flag "," [authzid] ","
        flag, sep, rest = message.partition(",")
        if not sep:
            raise ScramError("other-error")
        if flag.startswith("p="):
            # RFC 5802 §6: we offer no channel binding.
            raise ScramError("channel-binding-not-supported")
        if flag not in ("n", "y"):
            raise ScramError("other-error")
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise ScramError("other-error")
        if authzid:
            if not authzid.startswith("a="):
                raise ScramError("other-error")
            self.authzid = self._prepared(_saslname(authzid[2:]))
        if bare.startswith("m="):
            # RFC 5802 §5.1: a mandatory extension we do not know.
            raise ScramError("extensions-not-supported")
        (name, nonce), _ = _attributes(bare, "nr")
        if not _printable(nonce):
            raise ScramError("other-error")
        self.username = self._prepared(_saslname(name))
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = nonce
        self._state = "keys"
        return KeysNeeded(self.username)

    @staticmethod
    def _prepared(name: str) -> str:
        try:
            prepared = saslprep(name)
        except SaslprepError:
            raise ScramError("invalid-username-encoding") from None
        if not prepared:
            raise ScramError("invalid-username-encoding")
        return prepared

    def server_first(self, keys: ScramKeys, server_nonce: str) -> Challenge:
        """The server-first message with the user's salt and count (or made-up ones)."""
        if self._state != "keys" or not _printable(server_nonce):
            raise ScramError("other-error")
        self._keys = keys
        self._nonce += server_nonce
        salt = base64.b64encode(keys.salt).decode("ascii")
        self._server_first = f"r={self._nonce},s={salt},i={keys.iterations}"
        self._state = "client-final"
        return Challenge(self._server_first.encode("ascii"))

    def _client_final(self, message: str) -> Challenge:
        without_proof, sep, proof_attr = message.rpartition(",")
        if not sep or not proof_attr.startswith("p="):
            raise ScramError("other-error")
        (binding, nonce), _ = _attributes(without_proof, "cr")
        # RFC 5802 §5.1: without channel binding, c= is the base64 of the gs2 header itself.
        if _b64decode(binding) != self._gs2_header.encode("utf-8"):
            raise ScramError("channel-bindings-dont-match")
        if not hmac.compare_digest(nonce.encode("ascii", "replace"), self._nonce.encode()):
            raise ScramError("other-error")
        proof = _b64decode(proof_attr[2:])
        keys = self._keys
        if keys is None or len(proof) != len(keys.stored_key):
            raise ScramError("invalid-proof")
        # RFC 5802 §3: AuthMessage, ClientSignature, ClientKey = ClientProof XOR ClientSignature,
        # and the check H(ClientKey) == StoredKey.
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof))
        auth_message_bytes = auth_message.encode("utf-8")
        signature = hmac.new(keys.stored_key, auth_message_bytes, hashlib.sha256).digest()
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), keys.stored_key):
            raise ScramError("invalid-proof")
        self.verified = True
        server_signature = hmac.new(keys.server_key, auth_message_bytes, hashlib.sha256).digest()
        self._state = "done"
        return Challenge(b"v=" + base64.b64encode(server_signature))
