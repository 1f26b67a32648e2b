"""One twisted.cred portal and checker for every protocol, with the failed-login throttle.

Password verification (argon2/bcrypt, slow on purpose) runs in the thread pool; the reactor only
waits on the Deferred.  Failures are logged with the account and client address, never the
password, in the one line format fail2ban matches (docs/production.md): the user name is escaped
to one word (mailsuite.logtext.token), the client address ends the line.
"""

from __future__ import annotations

from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer, threads
from twisted.internet import reactor as default_reactor
from twisted.logger import Logger
from zope.interface import Interface, implementer

from mailsuite.accounts.db import Accounts
from mailsuite.accounts.scram_keys import ScramKeys
from mailsuite.accounts.throttle import FailedLoginThrottle, client_network
from mailsuite.logtext import token
from mailsuite.metrics import DISABLED, Metrics

log = Logger(namespace="mailsuite.auth")

# A SCRAM exchange holds its throttle slot from the key lookup to the client's proof: a client
# that never sends its proof gives the slot back as a failure after this long.
SCRAM_PROOF_SECONDS = 30.0


class AuthFailed(Exception):
    """Wrong credentials, unknown or disabled user."""


class AuthThrottled(Exception):
    """Too many failures from this client or for this account: try again later."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many failed logins, retry in {int(retry_after) + 1}s")
        self.retry_after = retry_after


class IMailUser(Interface):
    """The avatar: a user's canonical address."""


@implementer(ICredentialsChecker)
class AccountsChecker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, accounts: Accounts):
        self.accounts = accounts

    def requestAvatarId(self, creds):
        username = (
            creds.username.decode("utf-8", "replace")
            if isinstance(creds.username, bytes)
            else creds.username
        )
        password = (
            creds.password.decode("utf-8", "replace")
            if isinstance(creds.password, bytes)
            else creds.password
        )
        d = threads.deferToThread(self.accounts.verify_password, username, password)

        def checked(address):
            if address is None:
                raise error.UnauthorizedLogin()
            return address

        return d.addCallback(checked)


@implementer(portal.IRealm)
class MailRealm:
    def requestAvatar(self, avatarId, mind, *interfaces):
        return IMailUser, avatarId, lambda: None


class Authenticator:
    """Every protocol's password check.  An attempt is counted by the throttle before its
    password is checked (and taken back when it was right), and attempts for one (client
    network, account) run one at a time: while one is being verified the next waits for its
    outcome, then meets the throttle with that outcome counted.  So N concurrent guesses cost
    N attempts, never N verifications past the throttle, while a client that opens several
    connections at once with the right password gets them all (after the first, from the
    verification cache)."""

    def __init__(
        self,
        accounts: Accounts,
        throttle: FailedLoginThrottle,
        clock=None,
        metrics: Metrics = DISABLED,
    ):
        self.accounts = accounts
        self.throttle = throttle
        self.metrics = metrics
        self.clock = default_reactor if clock is None else clock
        self.portal = portal.Portal(MailRealm(), [AccountsChecker(accounts)])
        # (client network, account) -> attempts waiting for the one being verified
        self._in_flight: dict[tuple[str, str], list[defer.Deferred]] = {}

    def login(
        self,
        username: str,
        password: str,
        client_ip: str,
        protocol: str,
        mechanism: str = "command",
    ) -> defer.Deferred:
        """Deferred firing with the user's canonical address, or failing with AuthFailed /
        AuthThrottled. `mechanism` names the SASL mechanism for the metrics ("command": IMAP
        LOGIN, POP3 USER/PASS)."""
        key = (client_network(client_ip), username.lower())
        held = self._enter(
            key,
            username,
            client_ip,
            protocol,
            lambda: self.login(username, password, client_ip, protocol, mechanism),
        )
        if held is not None:
            if held.called:  # refused by the throttle (a waiter is counted when its turn comes)
                self.metrics.login(mechanism, "throttled")
            return held
        creds = credentials.UsernamePassword(username.encode("utf-8"), password.encode("utf-8"))
        d = self.portal.login(creds, None, IMailUser)

        def ok(result):
            _, address, _ = result
            self.throttle.finish(client_ip, username, ok=True)
            self.metrics.login(mechanism, "ok")
            log.info(
                "{protocol} login {user} from {ip}",
                protocol=protocol,
                user=token(address),
                ip=client_ip,
            )
            return address

        def failed(failure):
            failure.trap(error.UnauthorizedLogin, error.UnhandledCredentials)
            self.throttle.finish(client_ip, username, ok=False)
            self.metrics.login(mechanism, "failed")
            log.info(
                "{protocol} login failed for {user} from {ip}",
                protocol=protocol,
                user=token(username),
                ip=client_ip,
            )
            raise AuthFailed("authentication failed")

        def next_turn(result):
            self._next_turn(key)
            return result

        return d.addCallbacks(ok, failed).addBoth(next_turn)

    def scram_keys(self, username: str, client_ip: str, protocol: str) -> defer.Deferred:
        """Deferred[ScramAttempt]: the user's SCRAM keys (made-up ones for a user who has none),
        with the attempt already counted by the throttle, as `login` counts a password before
        checking it; errbacks with AuthThrottled.  The caller checks the proof and reports the
        verdict with `ScramAttempt.finish`; attempts for one (client network, account) wait for
        each other here exactly as logins do."""
        key = (client_network(client_ip), username.lower())
        held = self._enter(
            key,
            username,
            client_ip,
            protocol,
            lambda: self.scram_keys(username, client_ip, protocol),
        )
        if held is not None:
            return held
        d = threads.deferToThread(self.accounts.scram_keys, username)

        def found(result):
            address, keys = result
            return ScramAttempt(self, key, username, client_ip, protocol, address, keys)

        def lookup_failed(failure):
            self.throttle.finish(client_ip, username, ok=False)
            self._next_turn(key)
            return failure

        return d.addCallbacks(found, lookup_failed)

    def _enter(self, key, username: str, client_ip: str, protocol: str, again):
        """Let one attempt at a time through for (client network, account), counted by the
        throttle before anything is checked.  None: this attempt goes on (and holds the turn
        until `_next_turn`); else a Deferred to return instead: `again()` once the attempt in
        flight is over, or AuthThrottled."""
        waiting = self._in_flight.get(key)
        if waiting is not None:
            turn: defer.Deferred = defer.Deferred()
            waiting.append(turn)
            return turn.addCallback(lambda _: again())
        wait = self.throttle.begin(client_ip, username)
        if wait > 0:
            log.info(
                "{protocol} login throttled for {user} from {ip} ({wait:.0f}s)",
                protocol=protocol,
                user=token(username),
                ip=client_ip,
                wait=wait,
            )
            return defer.fail(AuthThrottled(wait))
        self._in_flight[key] = []
        return None

    def _next_turn(self, key: tuple[str, str]) -> None:
        for turn in self._in_flight.pop(key, ()):
            turn.callback(None)


class ScramAttempt:
    """One SCRAM exchange between its key lookup and its verdict: holds the (client network,
    account) slot until `finish`, or until SCRAM_PROOF_SECONDS pass (a failure)."""

    def __init__(
        self,
        authenticator: Authenticator,
        key: tuple[str, str],
        username: str,
        client_ip: str,
        protocol: str,
        address: str | None,
        keys: ScramKeys,
    ):
        self._authenticator = authenticator
        self._key = key
        self.username = username
        self.client_ip = client_ip
        self.protocol = protocol
        self.address = address  # None: unknown, disabled, or without SCRAM keys
        self.keys = keys
        self.done = False
        self._timer = authenticator.clock.callLater(SCRAM_PROOF_SECONDS, self.finish, False)

    def finish(self, ok: bool) -> str | None:
        """The proof's verdict: the user's address when it was right, the attempt still open and
        the user known; else None.  Logs the same lines as `login` (fail2ban matches them)."""
        if self.done:
            return None
        self.done = True
        if self._timer.active():
            self._timer.cancel()
        authn = self._authenticator
        ok = ok and self.address is not None
        authn.throttle.finish(self.client_ip, self.username, ok=ok)
        authn._next_turn(self._key)
        authn.metrics.login("SCRAM-SHA-256", "ok" if ok else "failed")
        if ok:
            log.info(
                "{protocol} login {user} from {ip}",
                protocol=self.protocol,
                user=token(self.address),
                ip=self.client_ip,
            )
            return self.address
        log.info(
            "{protocol} login failed for {user} from {ip}",
            protocol=self.protocol,
            user=token(self.username),
            ip=self.client_ip,
        )
        return None
