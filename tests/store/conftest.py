"""Store test fixtures: a fresh Store on a temporary folder, and a capture of log events."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from mailsuite.store import Store


class LogCapture:
    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines() if text in line]


@pytest.fixture
def logs():
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)


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
