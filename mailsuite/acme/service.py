"""The server's ACME client: a Twisted service whose own thread orders the certificate at first
start, renews it on schedule (mailsuite/acme/schedule.py), answers `mailsuite cert renew`, and
hands each new certificate to the TLS listeners without a restart.

The acme library's network I/O is blocking (requests), and the CA may take minutes to answer:
all of it, and every file under data_dir/acme/, stays in one dedicated thread, so neither the
reactor nor the durable-I/O or Twisted thread pools ever wait on it. The reactor only receives
the finished SSL context (TlsContexts.install): new connections get it, open ones keep theirs.
"""

from __future__ import annotations

import os
import threading
import time

from twisted.application import service
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger

from mailsuite.accounts.db import Accounts
from mailsuite.acme.challenges import ChallengeBoard
from mailsuite.acme.files import AcmeFiles, AcmeState, CertificateInfo, utc_text
from mailsuite.acme.names import certificate_names
from mailsuite.acme.order import AcmeFailure, obtain_certificate
from mailsuite.acme.schedule import next_attempt, next_wake, retry_delay
from mailsuite.config import Config
from mailsuite.tls import TlsContexts, TlsError

log = Logger(namespace="mailsuite.acme")

# How often the thread looks for `mailsuite cert renew`'s request file while it waits.
REQUEST_POLL = 1.0
# How long a stopping server waits for an attempt in progress to reach a safe point.
STOP_GRACE = 5.0


def serving_contexts(config: Config, files: AcmeFiles, board: ChallengeBoard) -> TlsContexts:
    """At start (blocking, before the reactor): the TLS contexts serving the ACME certificate,
    or, while there is none (or it cannot be loaded), a temporary self-signed one."""
    responder = board.alpn_certificate if config.acme.challenge == "tls-alpn-01" else None
    files.make_folder()
    if files.has_certificate():
        try:
            return TlsContexts(
                config, files.cert, files.key, alpn_responder=responder, self_signed=False
            )
        except TlsError as e:
            log.error(
                "acme: the stored certificate cannot be used ({err}); ordering a new one",
                err=str(e),
            )
    log.warn(
        "acme: no certificate from the CA yet: serving a temporary self-signed one "
        "({path}) and ordering one now",
        path=str(files.temporary_cert),
    )
    return TlsContexts(
        config,
        files.temporary_cert,
        files.temporary_key,
        alpn_responder=responder,
        self_signed=True,
    )


class AcmeService(service.Service):
    """Orders and renews the certificate; `challenges` holds the answers the listeners give."""

    name = "acme"

    def __init__(self, config: Config, accounts: Accounts | None = None):
        self.config = config
        self.settings = config.acme
        self.accounts = accounts
        self.files = AcmeFiles(config.data_dir)
        self.challenges = ChallengeBoard()
        self.tls = serving_contexts(config, self.files, self.challenges)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._done: defer.Deferred | None = None

    # -- reactor ------------------------------------------------------------------------------

    def startService(self):
        super().startService()
        self._stopping = False
        self._done = defer.Deferred()
        self._thread = threading.Thread(target=self._run, name="acme", daemon=True)
        self._thread.start()

    def stopService(self):
        super().stopService()
        self._stopping = True
        self._wake.set()
        done, self._done = self._done, None
        if done is None or done.called:
            return None
        # An attempt waiting on the CA is abandoned (the thread is a daemon), but one that is
        # writing its files gets the moment it needs.
        timer = reactor.callLater(STOP_GRACE, lambda: done.called or done.callback(None))
        done.addBoth(lambda r: timer.active() and timer.cancel())
        return done

    def _finished(self, done: defer.Deferred) -> None:
        if not done.called:
            done.callback(None)

    # -- the ACME thread ------------------------------------------------------------------------

    def _say(self, level: str, fmt: str, **fields) -> None:
        """Log from the ACME thread through the reactor (the observers are the reactor's)."""
        reactor.callFromThread(getattr(log, level), fmt, **fields)

    def _run(self) -> None:
        done = self._done
        try:
            lock = self.files.hold_server_lock()
        except BlockingIOError:
            self._say(
                "error",
                "acme: another server holds {path}; not ordering certificates",
                path=str(self.files.lock),
            )
            reactor.callFromThread(self._finished, done)
            return
        try:
            state = self.files.load_state()
            while not self._stopping:
                now = time.time()
                due = self._due(now, state)
                forced = self.files.take_renewal_request()
                if not forced and due > now:
                    forced = self._sleep_until(next_wake(now, due))
                    if self._stopping:
                        break
                    if not forced and due > time.time():
                        continue  # one of the twice-daily checks: look at the certificate again
                state = self._attempt(state, forced)
        except Exception as e:  # the thread must not die silently: say why ACME stopped
            self._say(
                "critical",
                "acme: certificate thread stopped: {err}",
                err=f"{type(e).__name__}: {e}",
            )
        finally:
            os.close(lock)
            reactor.callFromThread(self._finished, done)

    def _sleep_until(self, wake_at: float) -> bool:
        """Wait until `wake_at` (the renewal time, or the next of the twice-daily checks)
        while looking for `cert renew`'s request every REQUEST_POLL; True when one came."""
        while not self._stopping:
            if self.files.take_renewal_request():
                return True
            left = wake_at - time.time()
            if left <= 0:
                return False
            self._wake.wait(min(left, REQUEST_POLL))
            self._wake.clear()
        return False

    def _hosts(self) -> list[str]:
        domains = list(self.config.domains)
        if self.accounts is not None:
            domains += self.accounts.list_domains()
        return certificate_names(self.config, domains)

    def _due(self, now: float, state: AcmeState) -> float:
        info = self.files.certificate_info()
        if self.tls.cert_path != self.files.cert:
            info = None  # serving the temporary certificate (the stored one could not be used)
        elif info is not None and not set(self._hosts()) <= set(info.names):
            info = None  # a name was added (a new domain): the certificate must cover it now
        if info is None:
            return next_attempt(now, None, None, state.failures, state.next_attempt)
        return next_attempt(
            now, info.not_before, info.not_after, state.failures, state.next_attempt
        )

    def _attempt(self, state: AcmeState, forced: bool) -> AcmeState:
        hosts = self._hosts()
        now = time.time()
        state.attempts += 1
        state.last_attempt = now
        state.hosts = hosts
        self._say(
            "info",
            "acme: ordering a certificate for {names} from {directory} ({challenge}{why})",
            names=", ".join(hosts),
            directory=self.settings.directory_url,
            challenge=self.settings.challenge,
            why=", asked by `mailsuite cert renew`" if forced else "",
        )
        try:
            chain, key = obtain_certificate(self.settings, self.files, hosts, self.challenges)
            self.files.save_certificate(chain, key)
            context = self.tls.build_context(self.files.cert, self.files.key)
            info = self.files.certificate_info()
        except (AcmeFailure, TlsError, OSError) as e:
            return self._failed(state, now, str(e))
        except Exception as e:  # a library surprise is one failed attempt, not a dead thread
            return self._failed(state, now, f"{type(e).__name__}: {e}")
        if self._stopping:
            return state
        threads.blockingCallFromThread(
            reactor, self.tls.install, context, self.files.cert, self.files.key
        )
        state.failures = 0
        state.last_error = ""
        state.last_success = now
        state.next_attempt = 0.0
        self.files.save_state(state)
        self._say(
            "info",
            "acme: new certificate for {names} from {issuer}, valid until {until}; serving it on every TLS listener",
            names=", ".join(info.names) if info else ", ".join(hosts),
            issuer=info.issuer if info else "?",
            until=utc_text(info.not_after) if info else "?",
        )
        return state

    def _failed(self, state: AcmeState, now: float, reason: str) -> AcmeState:
        state.failures += 1
        state.last_error = reason
        delay = retry_delay(state.failures)
        state.next_attempt = now + delay
        try:
            self.files.save_state(state)
        except OSError as e:
            reason += f" (and the state file could not be written: {e})"
        current = self.files.certificate_info()
        self._say(
            "error",
            "acme: certificate order failed: {err}; next attempt in {delay} min; still serving {current}",
            err=reason,
            delay=round(delay / 60),
            current=_describe(current),
        )
        return state


def _describe(info: CertificateInfo | None) -> str:
    if info is None:
        return "the temporary self-signed certificate"
    return f"the certificate valid until {utc_text(info.not_after)}"
