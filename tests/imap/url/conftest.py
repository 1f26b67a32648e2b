"""The server both URLAUTH test modules run against: Alice and Bob, plaintext on loopback."""

from __future__ import annotations

import pytest

ALICE = "alice@example.test"
BOB = "bob@example.test"
LISTEN = {k: [] for k in ("smtp", "pop3", "pop3s", "http", "managesieve")}
SETTINGS = {"auth": {"plaintext": "loopback"}, "listen": LISTEN}


@pytest.fixture
def srv(server_factory):
    s = server_factory(**SETTINGS)
    s.add_user(ALICE)
    s.add_user(BOB)
    return s
