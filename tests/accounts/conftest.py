"""Accounts test fixtures: a fresh SQLite account database, and a capture of log events."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from mailsuite.accounts.db import Accounts


class LogCapture:
    def __init__(self):
        self.events: list[dict] = []

    def __call__(self, event: dict) -> None:
        self.events.append(event)

    def lines(self) -> list[str]:
        return [formatEvent(e) for e in self.events]


@pytest.fixture
def logs():
    capture = LogCapture()
    globalLogPublisher.addObserver(capture)
    yield capture
    globalLogPublisher.removeObserver(capture)


@pytest.fixture
def accounts(tmp_path) -> Accounts:
    acc = Accounts(tmp_path / "accounts.sqlite", ["example.test"])
    acc.add_domain("other.test")
    return acc
