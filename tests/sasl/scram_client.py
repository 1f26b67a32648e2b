"""An independent SCRAM-SHA-256 client written from RFC 5802 §3 and §7 with hashlib and hmac,
so that the tests do not check the server against its own arithmetic.  It imports nothing from
mailsuite."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os


def _hmac(key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, hashlib.sha256).digest()


def _hi(password: bytes, salt: bytes, iterations: int) -> bytes:
    """RFC 5802 §2.2 Hi(), written out: U1 = HMAC(p, salt + INT(1)), Ui = HMAC(p, Ui-1)."""
    u = _hmac(password, salt + b"\0\0\0\1")
    result = int.from_bytes(u, "big")
    for _ in range(iterations - 1):
        u = _hmac(password, u)
        result ^= int.from_bytes(u, "big")
    return result.to_bytes(32, "big")


class ScramClient:
    """client_first() -> client_final(server_first) -> verify(server_final)."""

    def __init__(self, username: str, password: str, nonce: str | None = None, gs2: str = "n,,"):
        self.username = username.replace("=", "=3D").replace(",", "=2C")
        self.password = password.encode("utf-8")
        self.nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.gs2 = gs2
        self.server_signature = b""

    @property
    def bare(self) -> str:
        return f"n={self.username},r={self.nonce}"

    def client_first(self) -> bytes:
        return (self.gs2 + self.bare).encode("utf-8")

    def client_final(self, server_first: bytes, *, tamper: bool = False) -> bytes:
        text = server_first.decode("utf-8")
        attrs = dict(part.split("=", 1) for part in text.split(","))
        assert attrs["r"].startswith(self.nonce) and len(attrs["r"]) > len(self.nonce)
        salt, iterations = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = _hi(self.password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        channel = base64.b64encode(self.gs2.encode()).decode()
        without_proof = f"c={channel},r={attrs['r']}"
        auth_message = f"{self.bare},{text},{without_proof}".encode()
        proof = bytes(
            a ^ b for a, b in zip(client_key, _hmac(stored_key, auth_message), strict=True)
        )
        if tamper:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        self.server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> bool:
        return server_final == b"v=" + base64.b64encode(self.server_signature)
