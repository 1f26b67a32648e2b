"""Store test fixtures: a fresh Store on a temporary folder (the `logs` capture is shared)."""

from __future__ import annotations

import pytest

from mailsuite.store import Store


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "mail")


@pytest.fixture
def mbox(store):
    return store.create_mailbox("alice@example.test")


def _message(n: int = 0, size: int = 300) -> bytes:
    head = f"From: a@example.net\r\nTo: alice@example.test\r\nSubject: test {n}\r\n\r\n"
    body = f"line of text {n}\r\n" * max(1, (size - len(head)) // 18)
    return (head + body).encode()


@pytest.fixture
def make_message():
    """make_message(n, size): a small RFC 5322 message with CRLF line ends (as SMTP gives it)."""
    return _message
