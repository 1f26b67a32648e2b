"""Password schemes: argon2 by default; bcrypt, sha512/sha256-crypt and Dovecot's {SCHEME}
hashes verified and replaced by argon2 after the first good login."""

from __future__ import annotations

import sqlite3

import pytest
from passlib.hash import bcrypt, sha256_crypt, sha512_crypt

from mailsuite.accounts.passwords import hash_password, verify_password

PASSWORD = "Correct Horse 1"

# Made by Dovecot 2.3.19: `doveadm pw -s <SCHEME> -p 'Correct Horse 1'`.
DOVECOT_HASHES = {
    "SHA512-CRYPT": "{SHA512-CRYPT}$6$O1zn9eA2t6BZm8a8$K31QCt6rXuKh0SSHmFMCuwg5Xz6FpnMPfkFajD6FC4exIfLNPTEA0kC3ZeSHTVtOXLmviwTWe09ekqlp9XDCY0",
    "SHA256-CRYPT": "{SHA256-CRYPT}$5$1M6/2Dc1Ud0ZDVu9$6FThC8bVvGHPCNuo75ifb3f623V6ACcGe2ki.zzalU8",
    "BLF-CRYPT": "{BLF-CRYPT}$2y$05$Ro8MzMQscUumrUWk//3N6ezMa6997I2ki.9B8v3o28T9QEtEx6mRG",
    "ARGON2ID": "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$NVQhiLqXaJ+0ksugMd77kg$mjWNCF38ts6Zq6Jw7CWBWsuR/kGQ60UMXFHQq79vzKs",
}

PLAIN_CRYPT_HASHES = {
    "bcrypt": bcrypt.using(rounds=5).hash(PASSWORD),
    "sha512_crypt": sha512_crypt.using(rounds=5000).hash(PASSWORD),
    "sha256_crypt": sha256_crypt.using(rounds=5000).hash(PASSWORD),
}


def stored_hash(tmp_path, address: str) -> str:
    db = sqlite3.connect(tmp_path / "accounts.sqlite")
    return db.execute("SELECT password FROM users WHERE address=?", (address,)).fetchone()[0]


def test_default_is_argon2id_and_verifies():
    h = hash_password(PASSWORD)
    assert h.startswith("$argon2id$")
    assert verify_password(PASSWORD, h) == (True, None)
    assert verify_password("wrong", h) == (False, None)


@pytest.mark.parametrize("scheme", sorted(DOVECOT_HASHES))
def test_dovecot_hash_verifies_and_is_upgraded_to_argon2_after_login(accounts, tmp_path, scheme):
    accounts.add_user("old@example.test", "placeholder-pw")
    accounts.import_user_hash("old@example.test", DOVECOT_HASHES[scheme])
    assert accounts.verify_password("old@example.test", "wrong password") is None
    assert stored_hash(tmp_path, "old@example.test") == DOVECOT_HASHES[scheme]
    assert accounts.verify_password("old@example.test", PASSWORD) == "old@example.test"
    upgraded = stored_hash(tmp_path, "old@example.test")
    assert upgraded.startswith("$argon2id$") and not upgraded.startswith("{")
    # The new hash works and the old one is gone.
    assert verify_password(PASSWORD, upgraded) == (True, None)
    assert accounts.verify_password("old@example.test", PASSWORD) == "old@example.test"


@pytest.mark.parametrize("scheme", sorted(PLAIN_CRYPT_HASHES))
def test_crypt_hashes_verify_and_are_upgraded(accounts, tmp_path, scheme):
    accounts.add_user("old@example.test", "placeholder-pw")
    accounts.import_user_hash("old@example.test", PLAIN_CRYPT_HASHES[scheme])
    assert accounts.verify_password("old@example.test", "wrong password") is None
    assert accounts.verify_password("old@example.test", PASSWORD) == "old@example.test"
    assert stored_hash(tmp_path, "old@example.test").startswith("$argon2id$")


@pytest.mark.parametrize(
    "garbage", ["", "{PLAIN}Correct Horse 1", "{UNKNOWN}abc", "$1$md5$notsupported", "*", "!"]
)
def test_unknown_or_garbage_hashes_never_verify(garbage):
    assert verify_password(PASSWORD, garbage) == (False, None)
