"""Accounts test fixtures: a fresh SQLite account database (the `logs` capture is shared)."""

from __future__ import annotations

import pytest

from mailsuite.accounts.db import Accounts


@pytest.fixture
def accounts(tmp_path) -> Accounts:
    acc = Accounts(tmp_path / "accounts.sqlite", ["example.test"])
    acc.add_domain("other.test")
    return acc
