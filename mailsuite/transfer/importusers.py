"""`mailsuite import users`: accounts and their password hashes from a Dovecot passwd-file.

Format (Dovecot's passwd-file): `user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra`, one
user a line, `#` comments. Only the first two fields matter here. Hashes are stored as they are
(`{SHA512-CRYPT}`, `{BLF-CRYPT}`, `{ARGON2ID}`, ... or a bare crypt string): the accounts
database verifies those and upgrades them to the current scheme at the user's next login, so
users keep their passwords. A new account and its Maildir are made in one transaction
(`Accounts.add_user(..., before_commit=...)`): a line that fails leaves neither behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mailsuite.accounts.addresses import parse_address
from mailsuite.accounts.db import AccountError, Accounts
from mailsuite.accounts.passwords import CONTEXT
from mailsuite.progress import Progress
from mailsuite.store import NoSuchMailbox, Store
from mailsuite.store.maildir import DEFAULT_FOLDERS
from mailsuite.transfer.progress import TransferStats

# Dovecot schemes whose hash is a crypt string the accounts CryptContext verifies.
KNOWN_PREFIXES = {
    "{SHA512-CRYPT}",
    "{SHA256-CRYPT}",
    "{BLF-CRYPT}",
    "{ARGON2ID}",
    "{ARGON2I}",
    "{CRYPT}",
}


def parse_passwd_file(text: str) -> Iterator[tuple[int, str, str]]:
    """(line number, address, stored hash) of each user line; malformed lines give hash ''."""
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, _, rest = line.partition(":")
        stored = rest.split(":", 1)[0]
        yield n, user.strip(), stored.strip()


def usable_hash(stored: str) -> bool:
    """Whether the accounts database can verify this hash ({PLAIN}, CRAM-MD5, SSHA... cannot)."""
    body = stored
    if stored.startswith("{"):
        prefix, sep, body = stored.partition("}")
        if not sep or prefix.upper() + "}" not in KNOWN_PREFIXES:
            return False
    return CONTEXT.identify(body, required=False) is not None


def _adopt_mailbox(store: Store, address: str) -> None:
    """Create the mailbox if missing, or adopt a Maildir already moved into place (Dovecot in
    place): its existing Sent/Drafts/Trash/Junk/Archive get their special-use roles."""
    try:
        mailbox = store.mailbox(address)
    except NoSuchMailbox:
        mailbox = store.create_mailbox(address)
    roles = mailbox.special_use()
    taken = set(roles.values())
    for name, role in DEFAULT_FOLDERS.items():
        if name not in roles and role not in taken and mailbox.exists(name):
            mailbox.set_special_use(name, role)


def _add_user(accounts: Accounts, store: Store, address: str, stored: str) -> None:
    """A new account with its carried-over hash and its Maildir, or neither."""
    address = parse_address(address)  # before any path is made of it
    existed = store.path_for(address).exists()
    try:
        accounts.add_user(
            address,
            "",
            stored_hash=stored,
            before_commit=lambda canonical: _adopt_mailbox(store, canonical),
        )
    except BaseException:
        if not existed:
            store.delete_mailbox(address)
        raise


def import_users(
    accounts: Accounts,
    store: Store,
    path: Path,
    replace: bool = False,
    progress: Progress | None = None,
) -> TransferStats:
    progress = progress or Progress()
    stats = TransferStats()
    entries = list(parse_passwd_file(path.read_text("utf-8", "replace")))
    progress.start(path.name, len(entries))
    for n, address, stored in entries:
        what = f"{path.name} line {n}"
        progress.advance()
        if "@" not in address or not stored:
            stats.skipped.append((what, "not user@domain:hash"))
            progress.note(f"skipped {what}: not user@domain:hash")
            continue
        if not usable_hash(stored):
            why = f"hash scheme {stored.split('}')[0]}}} not supported (set a new password)"
            stats.skipped.append((what, why))
            progress.note(f"skipped {what}: {why}")
            continue
        try:
            if accounts.get_user(address) is None:
                _add_user(accounts, store, address, stored)
                stats.copied += 1
                continue
            _adopt_mailbox(store, address.lower())
            if not replace:
                stats.present += 1
                continue
            accounts.import_user_hash(address, stored)
        except (AccountError, OSError) as e:
            stats.skipped.append((what, str(e)))
            progress.note(f"skipped {what}: {e}")
            continue
        stats.copied += 1
    return stats
