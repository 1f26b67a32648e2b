"""Fixtures for transfer tests: a real config, accounts DB and store in a temporary data_dir,
and a helper that runs the `mailsuite` admin command in-process."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from mailsuite import cli
from mailsuite.accounts.db import Accounts
from mailsuite.config import load_config
from mailsuite.store import Store


class Site:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True)
        self.conf = root / "mailsuite.toml"
        self.conf.write_text(
            'hostname = "mail.example.test"\ndomains = ["example.test"]\ndata_dir = "data"\n'
            '[tls]\ncert = "certs/mail.pem"\nkey = "certs/mail.key"\nself_signed = true\n'
        )
        self.config = load_config(self.conf)
        (root / "data" / "mail").mkdir(parents=True)
        self.accounts = Accounts(self.config.accounts_db, self.config.domains)
        self.store = Store(self.config.mail_dir)

    def add_user(self, address: str):
        self.accounts.add_user(address, "secret-password")
        return self.store.create_mailbox(address)

    @staticmethod
    def contents(mailbox, name: str) -> list[tuple[int, frozenset, int, bytes]]:
        """(uid, flags, internal date in seconds, bytes) of every message of a folder."""
        f = mailbox.folder(name)
        f.refresh(force=True)
        return [(m.uid, m.flags, int(m.internaldate), f.read(m)) for m in f.messages]

    def run(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        """`mailsuite --config <conf> argv...` in-process: (exit status, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        old = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
        try:
            code = cli.main(["--config", str(self.conf), *argv])
        finally:
            sys.stdin, sys.stdout, sys.stderr = old
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")
