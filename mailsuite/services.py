"""The shared services every front end receives: config, store, accounts, TLS, delivery, queue."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from mailsuite.accounts.checker import Authenticator
from mailsuite.accounts.db import Accounts
from mailsuite.accounts.throttle import FailedLoginThrottle
from mailsuite.acme.service import AcmeService
from mailsuite.config import Config, ConfigError
from mailsuite.delivery import Delivery
from mailsuite.durable import DurableIO
from mailsuite.durable.modes import create_private_file, make_private_dirs
from mailsuite.imap.commands.urlauth import section_bytes
from mailsuite.imap.server_state import ImapState
from mailsuite.junk.filter import JunkFilter
from mailsuite.limits import ConnectionLimiter
from mailsuite.metrics import DISABLED, Metrics
from mailsuite.pop3.server_state import Pop3State
from mailsuite.sieve.filtering import SieveFilter
from mailsuite.smtp.budget import BodyBudget
from mailsuite.spool.queue import Queue
from mailsuite.store import Store
from mailsuite.tls import TlsContexts
from mailsuite.urlauth import AccessKeys, UrlAuthority


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
    # URLAUTH (RFC 4467): the access keys and the resolver of URLFETCH and BURL.
    urlauth: UrlAuthority
    # The message content every SMTP session holds in memory, bounded ([limits] message_memory).
    message_memory: BodyBudget
    # kind -> [(host, port)] of the listeners once they listen (app.MailServer): what
    # autoconfig advertises when `[public]` does not say.
    listening: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    acme: AcmeService | None = None  # with [acme]: orders the certificate `tls` serves
    # Prometheus counters (mailsuite.metrics); DISABLED, counting nothing, with no listener.
    metrics: Metrics = field(default=DISABLED)

    @classmethod
    def create(cls, config: Config, with_tls: bool = True) -> Services:
        prepare_data_dir(config)
        io = DurableIO.open(config.data_dir, backend=config.storage.io)
        accounts = Accounts(config.accounts_db, config.domains)
        store = Store(config.mail_dir, io)
        queue = Queue(config.queue_dir, io)
        throttle = FailedLoginThrottle.from_config(config.auth)
        acme = AcmeService(config, accounts) if with_tls and config.acme is not None else None
        tls = acme.tls if acme is not None else TlsContexts(config) if with_tls else None
        metrics = Metrics() if config.listen.metrics else DISABLED
        junk = JunkFilter(config, store)
        return cls(
            config=config,
            store=store,
            accounts=accounts,
            authenticator=Authenticator(accounts, throttle, metrics=metrics),
            tls=tls,
            delivery=Delivery(
                accounts,
                store,
                queue,
                config.hostname,
                SieveFilter(config.sieve, io),
                metrics=metrics,
                junk=junk,
            ),
            queue=queue,
            connections=ConnectionLimiter(
                config.limits.connections_total, config.limits.connections_per_ip
            ),
            imap=ImapState(submit=io.submit),
            pop3=Pop3State(),
            acme=acme,
            metrics=metrics,
            junk=junk,
            urlauth=UrlAuthority(store, AccessKeys(store), section_reader=section_bytes),
            message_memory=BodyBudget.from_config(config),
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
