"""The shared services every front end receives: config, store, accounts, TLS, delivery, queue."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from mailsuite.accounts.checker import Authenticator
from mailsuite.accounts.db import Accounts
from mailsuite.accounts.throttle import FailedLoginThrottle
from mailsuite.config import Config, ConfigError
from mailsuite.delivery import Delivery
from mailsuite.durable import DurableIO
from mailsuite.durable.modes import create_private_file, make_private_dirs
from mailsuite.imap.server_state import ImapState
from mailsuite.junk.filter import JunkFilter
from mailsuite.limits import ConnectionLimiter
from mailsuite.pop3.server_state import Pop3State
from mailsuite.spool.queue import Queue
from mailsuite.store import Store
from mailsuite.tls import TlsContexts


def prepare_data_dir(config: Config) -> None:
    """Create data_dir if missing; a data_dir we cannot write is an error now, not at the
    first delivery."""
    try:
        for path in (config.data_dir, config.mail_dir, config.queue_dir):
            make_private_dirs(path)
        probe = config.data_dir / f".write-test.{os.getpid()}"
        create_private_file(probe)
        probe.unlink()
    except OSError as e:
        raise ConfigError("data_dir", f"{config.data_dir} is not writable: {e.strerror}") from None


@dataclass
class Services:
    config: Config
    store: Store
    accounts: Accounts
    authenticator: Authenticator
    tls: TlsContexts
    delivery: Delivery
    queue: Queue
    connections: ConnectionLimiter
    imap: ImapState  # what the IMAP sessions of this server share about folders
    pop3: Pop3State  # the POP3 sessions' maildrop locks, login times and listings
    junk: JunkFilter  # the per-user junk filter (delivery's verdicts, training)

    @classmethod
    def create(cls, config: Config, with_tls: bool = True) -> Services:
        prepare_data_dir(config)
        io = DurableIO.open(config.data_dir)
        accounts = Accounts(config.accounts_db, config.domains)
        store = Store(config.mail_dir, io)
        queue = Queue(config.queue_dir, io)
        throttle = FailedLoginThrottle.from_config(config.auth)
        junk = JunkFilter(config, store)
        return cls(
            config=config,
            store=store,
            accounts=accounts,
            authenticator=Authenticator(accounts, throttle),
            tls=TlsContexts(config) if with_tls else None,
            delivery=Delivery(accounts, store, queue, config.hostname, junk),
            queue=queue,
            connections=ConnectionLimiter(
                config.limits.connections_total, config.limits.connections_per_ip
            ),
            imap=ImapState(),
            pop3=Pop3State(),
            junk=junk,
        )

    def plaintext_auth_allowed(self, secure: bool, client_ip: str) -> bool:
        """Passwords only over TLS, except from loopback when `auth.plaintext = "loopback"`."""
        if secure:
            return True
        if self.config.auth.plaintext != "loopback":
            return False
        try:
            return ipaddress.ip_address(client_ip.removeprefix("::ffff:")).is_loopback
        except ValueError:
            return False
