"""`mailsuite serve`: one MultiService owning the shared services and every listener.

Protocol packages each expose `build_factory(services, kind)`; this module only decides which
listeners to open (from `[listen]`), wraps the implicit-TLS ones, and handles signals.
"""

from __future__ import annotations

import atexit
import functools
import grp
import json
import os
import pwd
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from twisted.application import service
from twisted.internet import reactor, task, tcp
from twisted.internet.error import CannotListenError
from twisted.logger import (
    Logger,
    LogLevel,
    formatEvent,
    globalLogBeginner,
)
from twisted.protocols.tls import TLSMemoryBIOFactory

from mailsuite import heap
from mailsuite.config import Config, embedded_base, is_embedded, parse_listen_address
from mailsuite.durable.modes import UMASK, make_private_dirs
from mailsuite.imap import server as imap_server
from mailsuite.junk.read_mail import ReadMailLearner
from mailsuite.limits import raise_fd_limit
from mailsuite.managesieve import server as managesieve_server
from mailsuite.metrics import DISABLED, Metrics
from mailsuite.pop3 import server as pop3_server
from mailsuite.relay import runner as relay_runner
from mailsuite.services import Services
from mailsuite.smtp import server as smtp_server
from mailsuite.tls import TlsError
from mailsuite.transport import WriteThroughServer
from mailsuite.web import monitor as web_monitor
from mailsuite.web import site as web_site

log = Logger(namespace="mailsuite")

# Each `[listen]` kind and the front end whose `build_factory(services, kind)` serves it.
LISTENERS = {
    "smtp": smtp_server,
    "submission": smtp_server,
    "submissions": smtp_server,
    "pop3": pop3_server,
    "pop3s": pop3_server,
    "imap": imap_server,
    "imaps": imap_server,
    "http": web_site,
    "https": web_site,
    "metrics": web_monitor,
    "managesieve": managesieve_server,
}
IMPLICIT_TLS = {"submissions", "pop3s", "imaps", "https"}
# What each listener is for, as the start-up summary says it.
PURPOSES = {
    "smtp": "inbound MX: mail from other servers",
    "submission": "submission, STARTTLS then AUTH: your mail programs send here",
    "submissions": "submission over implicit TLS (RFC 8314)",
    "pop3": "POP3, STLS",
    "pop3s": "POP3 over implicit TLS",
    "imap": "IMAP, STARTTLS",
    "imaps": "IMAP over implicit TLS",
    "http": "web: client autoconfiguration (Thunderbird, Outlook, Apple), MTA-STS",
    "https": "web over TLS: autoconfiguration, Outlook autodiscover, MTA-STS policy",
    "managesieve": "ManageSieve, STARTTLS: users edit their Sieve filters",
    "metrics": "Prometheus /metrics and /healthz (loopback)",
}
INDEX_SAVE_SECONDS = 5.0
EX_CONFIG = 78  # sysexits.h: a configuration error


class StartRefused(Exception):
    """Why the process will not run as it was started (exit EX_CONFIG)."""


@dataclass(frozen=True)
class RunAs:
    """The account to become: `user` (and `group`) of the config, looked up."""

    name: str
    uid: int
    gid: int


def run_as(config: Config) -> RunAs | None:
    """The account a process started as root becomes, None when it stays as it is (not root,
    or root with `allow_root`). StartRefused for root without `user`, or an unknown name."""
    if os.geteuid() != 0:
        return None  # nothing to drop; the files it makes are the caller's, as started
    if not config.user:
        if config.allow_root:
            return None
        raise StartRefused(
            'refusing to run as root: set `user = "mailsuite"` (an unprivileged account) in '
            f"{config.path or 'the config'}, or `allow_root = true` to run as root anyway"
        )
    try:
        pw = pwd.getpwnam(config.user)
    except KeyError:
        raise StartRefused(f"user: no such user {config.user!r}") from None
    gid = pw.pw_gid
    if config.group:
        try:
            gid = grp.getgrnam(config.group).gr_gid
        except KeyError:
            raise StartRefused(f"group: no such group {config.group!r}") from None
    if pw.pw_uid == 0 and not config.allow_root:
        raise StartRefused(f"user: {config.user!r} is root; set `allow_root = true` for that")
    return RunAs(pw.pw_name, pw.pw_uid, gid)


def make_own_folders(account: RunAs | None, folders) -> None:
    """Make the missing ones of `folders` (0700) and give what was made to `account`: run as
    root for a process about to become it (data_dir, the certificate's folder). Only folders
    made here change owner: nothing a user could have planted is ever chowned."""
    for folder in folders:
        for created in make_private_dirs(folder):
            if account is not None:
                os.chown(created, account.uid, account.gid, follow_symlinks=False)


def drop_privileges(account: RunAs | None) -> None:
    """Become `account` for good: supplementary groups (the user's own, so that a group such
    as ssl-cert can grant the key), group, then user, in that order (once the uid is gone the
    groups can no longer change). Checked afterwards: a drop that did not happen is fatal."""
    if account is None:
        return
    os.initgroups(account.name, account.gid)
    os.setgid(account.gid)
    os.setuid(account.uid)
    if account.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise StartRefused("could not drop root privileges")
    if os.getuid() != account.uid or os.getgid() != account.gid:
        raise StartRefused(f"could not become {account.name}")


def build_factory(services: Services, kind: str):
    factory = LISTENERS[kind].build_factory(services, kind)
    factory.noisy = False  # we log listeners ourselves; per-factory start/stop lines are noise
    if kind in IMPLICIT_TLS:
        factory = TLSMemoryBIOFactory(services.tls.server_options(), False, factory)
        factory.noisy = False
    return factory


class ListenerService(service.Service):
    """One listening socket; `port` is the bound port (useful with port 0 in tests).

    `bound` is a socket `bind_listeners` bound before the process gave up root (ports below
    1024); without it the socket is bound at start."""

    def __init__(
        self,
        kind: str,
        address: str,
        factory,
        bound: socket.socket | None = None,
        metrics: Metrics = DISABLED,
    ):
        self.kind = kind
        self.address = address
        self.host, self.requested_port = parse_listen_address(address, f"listen.{kind}")
        self.factory = factory
        self.listening = None
        self.bound = bound
        self.metrics = metrics
        metrics.listening(kind, address, False)  # /healthz: not up until it listens

    @property
    def port(self) -> int:
        return self.listening.getHost().port

    def startService(self):
        super().startService()
        if self.bound is not None:
            sock, self.bound = self.bound, None
            # The Port takes a duplicate of the descriptor (as reactor.adoptStreamPort does).
            self.listening = _Port._fromListeningDescriptor(
                reactor, sock.fileno(), sock.family, self.factory
            )
            sock.close()
        else:
            self.listening = _Port(self.requested_port, self.factory, 128, self.host, reactor)
        self.listening.startListening()
        self.metrics.listening(self.kind, self.address, True)
        log.info(
            "listening for {kind} on {host}:{port}", kind=self.kind, host=self.host, port=self.port
        )

    def stopService(self):
        super().stopService()
        self.metrics.listening(self.kind, self.address, False)
        if self.listening is not None:
            return self.listening.stopListening()


class _Port(tcp.Port):
    """IPv6 listeners are IPv6-only, so that "0.0.0.0:25" and "[::]:25" can both be listed."""

    transport = WriteThroughServer

    def createInternetSocket(self):
        sock = super().createInternetSocket()
        if self.addressFamily == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        return sock


def bind_listeners(config: Config) -> dict[str, list[socket.socket]]:
    """Every `[listen]` socket bound and listening, by kind, before the reactor runs: done
    while the process may still be root, so ports below 1024 need no other privilege.
    CannotListenError (its text names the address) when one cannot be bound."""
    bound: dict[str, list[socket.socket]] = {}
    try:
        for kind in LISTENERS:
            for address in getattr(config.listen, kind):
                host, port = parse_listen_address(address, f"listen.{kind}")
                # The same socket options as when the Port binds itself (V6ONLY, REUSEADDR,
                # non-blocking, close-on-exec).
                sock = _Port(port, None, 128, host, reactor).createInternetSocket()
                bound.setdefault(kind, []).append(sock)
                try:
                    sock.bind((host, port))
                except OSError as e:
                    raise CannotListenError(host, port, e) from None
                sock.listen(128)
    except BaseException:
        for socks in bound.values():
            for sock in socks:
                sock.close()
        raise
    return bound


class MailServer(service.MultiService):
    def __init__(self, services: Services, bound: dict[str, list[socket.socket]] | None = None):
        super().__init__()
        self.shared = services  # (MultiService keeps its children in .services)
        self.listeners: list[ListenerService] = []
        bound = {kind: list(socks) for kind, socks in (bound or {}).items()}
        for kind in LISTENERS:
            for address in getattr(services.config.listen, kind):
                sock = bound[kind].pop(0) if bound.get(kind) else None
                factory = build_factory(services, kind)
                listener = ListenerService(kind, address, factory, sock, services.metrics)
                listener.setServiceParent(self)
                self.listeners.append(listener)
        relay_runner.build_service(services, services.delivery.deliver_notice).setServiceParent(
            self
        )
        if services.acme is not None:
            services.acme.setServiceParent(self)
        ReadMailLearner(services.junk).service().setServiceParent(self)
        self._saver = task.LoopingCall(services.store.persist_indexes)
        if services.metrics.enabled:
            web_monitor.add_probes(services)

    def port(self, kind: str) -> int:
        for listener in self.listeners:
            if listener.kind == kind:
                return listener.port
        raise KeyError(kind)

    def startService(self):
        super().startService()
        listening: dict[str, list[tuple[str, int]]] = {}
        for listener in self.listeners:
            listening.setdefault(listener.kind, []).append((listener.host, listener.port))
        self.shared.listening = listening
        self._saver.start(INDEX_SAVE_SECONDS, now=False)

    def stopService(self):
        if self._saver.running:
            self._saver.stop()
        d = super().stopService()
        self.shared.store.save_indexes()
        self.shared.junk.close()
        return d


def _event_text(event: dict) -> str:
    """The event's text: str.format for the plain "{name}" formats our own events use (done in
    C; Twisted's formatter is pure Python, a few percent of a busy server's time at info level),
    Twisted's formatEvent for everything else (its "{call()}" form, legacy events, errors)."""
    fmt = event.get("log_format")
    if fmt is not None and "()" not in fmt:
        try:
            return fmt.format_map(event)
        except Exception:
            pass
    return formatEvent(event)


@functools.lru_cache(maxsize=4)
def _second_stamp(second: int) -> tuple[str, str]:
    local = time.localtime(second)
    return time.strftime("%Y-%m-%dT%H:%M:%S", local), time.strftime("%z", local)


def log_stamp(when: float) -> str:
    """ISO 8601 local time with milliseconds and the UTC offset, for text log files."""
    second = int(when)
    day_time, offset = _second_stamp(second)
    return f"{day_time}.{int((when - second) * 1000):03d}{offset}"


def log_observer(fmt: str, out, stamped: bool):
    """A log observer writing one line per event to `out`: a JSON object ("json"), or
    "<level> <namespace>: <text>" ("text"), dated (log_stamp) when `stamped`: a file has no one
    else to date its lines, where the journal or a container runtime dates standard output."""
    if fmt == "json":

        def observer(event):
            # One flat object per line: time, level, namespace, text and the event's own fields.
            record = {
                "time": event.get("log_time"),
                "level": getattr(event.get("log_level"), "name", "info"),
                "namespace": event.get("log_namespace", ""),
                "text": _event_text(event),
            }
            for key, value in event.items():
                if not key.startswith("log_") and key not in ("format", "message", "system"):
                    record[key] = (
                        value
                        if isinstance(value, (str, int, float, bool, type(None)))
                        else str(value)
                    )
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

        return observer

    def observer(event):
        text = _event_text(event)
        if event.get("log_failure") is not None:
            text += "\n" + event["log_failure"].getTraceback()
        ns = event.get("log_namespace", "")
        lvl = event.get("log_level")
        line = f"{lvl.name if lvl else 'info'} {ns}: {text}\n"
        if stamped:
            line = log_stamp(event.get("log_time") or time.time()) + " " + line
        out.write(line)

    return observer


class LinesByTurn:
    """The log output, written once per reactor turn for the lines the reactor logs during
    the turn (with those any other thread logs meanwhile, in the order they came).

    Why: each write to the log is a system call, and on the reactor every system call lets
    the durable pool's threads take the interpreter lock (that the reactor then waits to get
    back); a busy SMTP server logs two lines per message.  Lines from other threads, or
    while the reactor is not running, are written at once; what is held is written at the
    end of the turn, at shutdown and at exit."""

    def __init__(self, out, the_reactor=reactor) -> None:
        self._out = out
        self._reactor = the_reactor
        self._reactor_thread = threading.get_ident()
        self._held: list[str] = []
        self._posted = False
        # Reentrant: a signal handler (Twisted's, on SIGTERM) logs in the reactor's thread,
        # maybe while that thread is in here.
        self._lock = threading.RLock()

    def write(self, text: str) -> None:
        if self._reactor.running and threading.get_ident() == self._reactor_thread:
            with self._lock:
                self._held.append(text)
                if self._posted:
                    return
                self._posted = True
            self._reactor.callLater(0, self.flush)
            return
        with self._lock:
            held, self._held = self._held, []
            held.append(text)
            self._out.write("".join(held))

    def flush(self) -> None:
        with self._lock:
            self._posted = False
            held, self._held = self._held, []
            if held:
                self._out.write("".join(held))


def level_gate(observer, level: LogLevel):
    """`observer` for the events of `level` and above that have a namespace: the rule of
    Twisted's FilteringLogObserver with a LogLevelFilterPredicate, in one set lookup (theirs
    went through four calls and a sort per event, a few percent of a busy relay's time)."""
    enabled = frozenset(lvl for lvl in LogLevel.iterconstants() if lvl >= level)
    # Twisted's own legacy lines below a warning ("SessionFactory starting on 2525", "Starting
    # factory <...>", "(UDP Port 53124 Closed)" for every DNS query) say nothing an operator
    # needs: our listeners and the relay log what they do themselves.
    quiet = frozenset((LogLevel.debug, LogLevel.info))

    def gate(event: dict) -> None:
        namespace = event.get("log_namespace")
        if event.get("log_level") in enabled and namespace:
            if namespace == "log_legacy" and event.get("log_level") in quiet:
                return
            observer(event)

    return gate


def log_folder_problem(config: Config) -> str | None:
    """Why the log file could not be written (its folder, or the nearest one that exists to
    make it in, is not writable), or None: `check` asks before `serve` would fail."""
    if config.log.file == "-":
        return None
    folder = Path(config.log.file).parent
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"log.file: {probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"log.file: the folder {probe} is not writable"
    log_path = Path(config.log.file)
    if log_path.exists() and not os.access(log_path, os.W_OK):
        return f"log.file: {log_path} is not writable"
    return None


def start_logging(config: Config) -> None:
    """Send log events to standard output or the `[log] file` (its folder made, 0700)."""
    level = LogLevel.levelWithName(config.log.level.lower())
    to_file = config.log.file != "-"
    if to_file:
        make_private_dirs(Path(config.log.file).parent)
    out = open(config.log.file, "a", buffering=1) if to_file else sys.stdout  # noqa: SIM115
    lines = LinesByTurn(out)
    reactor.addSystemEventTrigger("after", "shutdown", lines.flush)
    atexit.register(lines.flush)
    observer = log_observer(config.log.format, lines, stamped=to_file)
    globalLogBeginner.beginLoggingTo([level_gate(observer, level)], redirectStandardIO=False)


def serve(config: Config) -> int:
    os.umask(UMASK)
    # Delivery threads hold the GIL between their fsyncs; a shorter switch interval hands it
    # back to the reactor sooner (measured: +3-7 % SMTP deliveries/s at 10 sessions).
    sys.setswitchinterval(0.0005)
    heap.tune_collector()
    try:
        account = run_as(config)
    except StartRefused as e:
        print(f"mailsuite: {e}", file=sys.stderr)
        return EX_CONFIG
    try:
        start_logging(config)
    except OSError as e:
        print(f"mailsuite: cannot write the log {config.log.file}: {e.strerror}", file=sys.stderr)
        return EX_CONFIG
    # Before the connection limiter is built: its default total follows this limit.
    fd_limit = raise_fd_limit()
    # Order matters: listeners bound while root may bind ports below 1024; root given up
    # before anything under data_dir is opened (mail, accounts, queue, certificate key), so
    # none of it is ever read with root's rights.
    try:
        bound = bind_listeners(config)
    except CannotListenError as e:
        # A port in use or refused: stop, as Postfix does, rather than run without it.
        log.critical("cannot start: {err}", err=str(e))
        return 1
    try:
        if account is not None:
            make_own_folders(
                account, (config.data_dir, config.tls.cert.parent, config.tls.key.parent)
            )
        drop_privileges(account)
    except (StartRefused, OSError) as e:
        log.critical("cannot start: {err}", err=str(e))
        return EX_CONFIG
    if account is not None:
        log.info(
            "running as {user} (uid {uid}, gid {gid})",
            user=account.name,
            uid=account.uid,
            gid=account.gid,
        )
    try:
        services = Services.create(config)
    except TlsError as e:
        log.critical("cannot start: {err}", err=str(e))
        if config.log.file != "-":
            print(f"mailsuite: cannot start: {e}", file=sys.stderr)
        return EX_CONFIG
    server = MailServer(services, bound)

    def on_hup(signum, frame):
        reactor.callFromThread(services.tls.reload)

    status = 0

    def start():
        nonlocal status
        try:
            server.startService()
        except Exception as e:
            # A port in use or refused (25 without the privilege): stop, as Postfix does,
            # rather than run without the listener.
            log.critical("cannot start: {err}", err=str(e))
            status = 1
            reactor.stop()

    signal.signal(signal.SIGHUP, on_hup)
    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    log.info(
        "mailsuite serving {host} for {domains}",
        host=config.hostname,
        domains=json.dumps(config.domains),
    )
    log.info(
        "connections: {total} in all, {per_ip} per address (file descriptors: {fds})",
        total=services.connections.total,
        per_ip=services.connections.per_ip,
        fds=fd_limit,
    )
    summary = startup_summary(config, services, bound)
    if config.log.format == "json" and config.log.file == "-":
        # Standard output is a stream of JSON objects there: the summary is one of them.
        log.info("{summary}", summary=summary.rstrip("\n"))
    else:
        print(summary, flush=True)
    reactor.run()
    return status


def _bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def startup_summary(
    config: Config, services: Services, bound: dict[str, list[socket.socket]]
) -> str:
    """What an operator needs at start, printed once: each listener with its address and what
    it is for, where the data and the certificate are, and how to add a user."""
    lines = [f"mailsuite {version_text()}: {config.hostname} for {', '.join(config.domains)}"]
    for kind in LISTENERS:
        for sock in bound.get(kind, ()):
            purpose = PURPOSES.get(kind, kind)
            lines.append(f"  {kind:<12} {_bound_address(sock):<22} {purpose}")
    if is_embedded(config):
        lines.append(f"  config       embedded default ({config.path}); paths in {embedded_base()}")
    else:
        lines.append(f"  config       {config.path}")
    lines.append(f"  data         {config.data_dir}")
    tls = services.tls
    if tls.made_fingerprint:
        how = "self-signed, made now"
    elif config.tls.self_signed:
        how = "self-signed or your own"
    else:
        how = "configured"
    lines.append(f"  certificate  {config.tls.cert} ({how}; SHA-256 {tls.fingerprint})")
    lines.append(
        f"  log          {'standard output' if config.log.file == '-' else config.log.file}"
    )
    command = "mailsuite" if is_embedded(config) else f"mailsuite --config {config.path}"
    users = len(services.accounts.list_users())
    first = config.domains[0] if config.domains else "example.test"
    verb = "add the first user" if users == 0 else f"{users} users; add another"
    lines.append(f"  {verb}: {command} user add postmaster@{first}")
    return "\n".join(lines) + "\n"


def version_text() -> str:
    """This installation's version, from the package metadata."""
    try:
        return metadata.version("mailsuite")
    except metadata.PackageNotFoundError:
        return "(not installed)"
