"""Loopback fixtures and helpers for the relay: a reactor thread, a stub DNS server (twisted.names.server)
and a scripted receiving SMTP server that injects faults on request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from twisted.internet import defer, protocol, reactor
from twisted.internet.error import CannotListenError
from twisted.internet.threads import blockingCallFromThread
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase

from mailsuite.config import Config, RelayConfig
from mailsuite.tls import TlsContexts


def ensure_reactor() -> None:
    """The suite's one reactor thread (tests/conftest.py), waited for until it runs."""
    from tests.conftest import ensure_reactor as start_shared_reactor

    start_shared_reactor()
    while not reactor.running:
        time.sleep(0.01)


def in_reactor(fn, *args, **kwargs):
    """Run fn in the reactor thread; coroutines are awaited; returns the result."""

    def call():
        result = fn(*args, **kwargs)
        if hasattr(result, "__await__") and not isinstance(result, defer.Deferred):
            return defer.Deferred.fromCoroutine(result)
        return result

    return blockingCallFromThread(reactor, call)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


# -- stub DNS ------------------------------------------------------------------------------


class StubResolver(ResolverBase):
    """Answers from a dict {(name, type): [payload, ...]}; names absent entirely → NXDOMAIN."""

    def __init__(self):
        super().__init__()
        self.records: dict[tuple[str, int], list] = {}
        self.servfail: set[str] = set()

    def add_mx(self, domain: str, *mx: tuple[int, str]) -> None:
        self.records[(domain, dns.MX)] = [dns.Record_MX(p, n) for p, n in mx]

    def add_a(self, name: str, *addrs: str) -> None:
        self.records[(name, dns.A)] = [dns.Record_A(a) for a in addrs]

    def add_aaaa(self, name: str, *addrs: str) -> None:
        self.records[(name, dns.AAAA)] = [dns.Record_AAAA(a) for a in addrs]

    def _lookup(self, name, cls, type, timeout):
        name = name.decode() if isinstance(name, bytes) else str(name)
        name = name.lower().rstrip(".")
        if name in self.servfail:
            return defer.fail(RuntimeError("stub SERVFAIL"))  # the server answers SERVFAIL
        if not any(n == name for n, _ in self.records):
            return defer.fail(error.DNSNameError(dns.Message(rCode=dns.ENAME)))
        answers = [
            dns.RRHeader(name=name, type=type, cls=cls, ttl=60, payload=p)
            for p in self.records.get((name, type), [])
        ]
        return defer.succeed((answers, [], []))


@pytest.fixture
def stub_dns():
    """(resolver, "127.0.0.1:port"): a UDP+TCP DNS server answering from resolver.records."""
    ensure_reactor()
    resolver = StubResolver()
    factory = server.DNSServerFactory(clients=[resolver])

    def listen():
        # The same port number for UDP and TCP: a free UDP port may be taken for TCP, so try
        # again with another one (and a fresh protocol: a stopped port keeps its transport).
        for _ in range(20):
            udp_proto = dns.DNSDatagramProtocol(factory)
            udp = reactor.listenUDP(0, udp_proto, interface="127.0.0.1")
            try:
                tcp = reactor.listenTCP(udp.getHost().port, factory, interface="127.0.0.1")
            except CannotListenError:
                udp.stopListening()
                continue
            return udp, tcp
        raise RuntimeError("no port free for both UDP and TCP")

    udp, tcp = in_reactor(listen)
    yield resolver, f"127.0.0.1:{udp.getHost().port}"
    in_reactor(udp.stopListening)
    in_reactor(tcp.stopListening)


# -- scripted SMTP server ------------------------------------------------------------------


@dataclass
class Transaction:
    mail_from: str
    rcpts: list[str]
    accepted: list[str]
    data: bytes  # un-stuffed, CRLF line ends as received
    tls: bool


@dataclass
class Script:
    """What the receiving server does; tests change fields before (or between) deliveries."""

    greeting: str = "220 sink.test ESMTP scripted"
    extensions: list[str] = field(
        default_factory=lambda: [
            "PIPELINING",
            "SIZE 100000000",
            "8BITMIME",
            "SMTPUTF8",
            "DSN",
            "ENHANCEDSTATUSCODES",
            "STARTTLS",
        ]
    )
    # address -> reply line for RCPT; default 250
    rcpt: dict[str, str] = field(default_factory=dict)
    mail: str = "250 2.1.0 ok"
    # Replies to the final dot, one per transaction; the last one repeats.
    data_end: list[str] = field(default_factory=lambda: ["250 2.0.0 queued"])
    # "ok" | "refuse" (454) | "break" (220 then a broken handshake)
    starttls: str = "ok"
    # close the connection after this many bytes of message data
    drop_after: int | None = None
    # command verb (upper) -> seconds to wait before replying
    slow: dict[str, float] = field(default_factory=dict)
    auth: dict[str, str] = field(default_factory=dict)  # username -> password
    auth_mechs: str = "PLAIN LOGIN"
    implicit_tls: bool = False
    # RCPTs beyond this many in one transaction get "452 4.5.3 too many recipients".
    rcpt_limit: int | None = None
    # A reply line that replaces the EHLO response (e.g. "502 5.5.1 no EHLO here").
    ehlo_reply: str | None = None


class ScriptedSmtp(protocol.Protocol):
    def connectionMade(self):
        self.f = self.factory
        self.f.connections += 1
        self.f.active += 1
        self.f.max_active = max(self.f.max_active, self.f.active)
        self.buf = b""
        self.in_data = False
        self.data = b""
        self.mail_from = None
        self.rcpts = []
        self.accepted = []
        self.tls = self.f.script.implicit_tls
        self.busy = False
        self.auth_state = None
        self.authenticated = None
        self.transport.write((self.f.script.greeting + "\r\n").encode())

    def connectionLost(self, reason):
        self._session_over()

    def _session_over(self):
        # Sessions count as active from connect until QUIT or loss (TCP teardown may lag).
        if not getattr(self, "over", False):
            self.over = True
            self.f.active -= 1

    def dataReceived(self, data):
        if getattr(self, "dead", False):
            return  # TLS may still hand over decrypted bytes after an abort
        if getattr(self, "broken_tls", False):
            self.transport.write(b"\x15\x03\x03\x00\x02\x02\x28 not TLS at all\r\n")
            self.transport.loseConnection()
            return
        self.buf += data
        self._process()

    def _process(self):
        while not self.busy:
            if self.in_data:
                stream, self.buf = self.data + self.buf, b""
                drop = self.f.script.drop_after
                if drop is not None and len(stream) >= drop:
                    self.dead = True
                    self.transport.abortConnection()
                    return
                if stream.startswith(b".\r\n"):
                    body, rest = b"", stream[3:]
                else:
                    end = stream.find(b"\r\n.\r\n")
                    if end < 0:
                        self.data = stream
                        return
                    body, rest = stream[: end + 2], stream[end + 5 :]
                self.data, self.buf, self.in_data = b"", rest, False
                self._end_data(body)
                continue
            idx = self.buf.find(b"\r\n")
            if idx < 0:
                return
            line, self.buf = self.buf[:idx].decode("utf-8", "replace"), self.buf[idx + 2 :]
            self.f.commands.append(line)
            self._command(line)

    def _reply(self, verb: str, *lines: str):
        text = "".join(lines)
        delay = self.f.script.slow.get(verb)
        if delay:
            self.busy = True

            def later():
                self.busy = False
                if self.transport.connected:
                    self.transport.write(text.encode())
                    self._process()

            reactor.callLater(delay, later)
        else:
            self.transport.write(text.encode())

    def _end_data(self, body: bytes):
        # RFC 5321 §4.5.2: remove the transparency dot.
        lines = body.split(b"\r\n")
        unstuffed = b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)
        s = self.f.script
        reply = s.data_end[min(self.f.data_count, len(s.data_end) - 1)]
        self.f.data_count += 1
        if reply.startswith("2"):
            self.f.transactions.append(
                Transaction(self.mail_from, self.rcpts, self.accepted, unstuffed, self.tls)
            )
        self.mail_from, self.rcpts, self.accepted = None, [], []
        self._reply("DATA-END", reply + "\r\n")

    def _command(self, line: str):
        s = self.f.script
        verb = line.split(" ", 1)[0].upper()
        if self.auth_state:
            self._auth_step(line)
            return
        if verb == "EHLO" and s.ehlo_reply:
            self._reply(verb, s.ehlo_reply + "\r\n")
        elif verb in ("EHLO",):
            ext = [e for e in s.extensions if not (self.tls and e == "STARTTLS")]
            if s.auth:
                ext.append("AUTH " + s.auth_mechs)
            out = ["250-sink.test\r\n"]
            out += [f"250-{e}\r\n" for e in ext[:-1]]
            out.append(f"250 {ext[-1]}\r\n" if ext else "")
            if not ext:
                out = ["250 sink.test\r\n"]
            self._reply(verb, *out)
        elif verb == "HELO":
            self._reply(verb, "250 sink.test\r\n")
        elif verb == "STARTTLS":
            if s.starttls == "refuse":
                self._reply(verb, "454 4.7.0 TLS not available\r\n")
            elif s.starttls == "break":
                # Accept, then answer the ClientHello with garbage: a failed handshake.
                self.transport.write(b"220 2.0.0 go ahead\r\n")
                self.broken_tls = True
            else:
                self.transport.write(b"220 2.0.0 go ahead\r\n")
                self.buf = b""
                self.transport.startTLS(self.f.tls_options)
                self.tls = True
        elif verb == "AUTH":
            parts = line.split()
            if len(parts) >= 3 and parts[1].upper() == "PLAIN":
                self._check_plain(parts[2])
            elif len(parts) >= 2 and parts[1].upper() == "LOGIN":
                self.auth_state = ["LOGIN"]
                self._reply(verb, "334 VXNlcm5hbWU6\r\n")
            else:
                self._reply(verb, "504 5.5.4 unsupported\r\n")
        elif verb == "MAIL":
            self.mail_from = line
            self.rcpts, self.accepted = [], []
            self.f.mail_lines.append(line)
            self._reply(verb, s.mail + "\r\n")
        elif verb == "RCPT":
            self.f.rcpt_lines.append(line)
            addr = line[line.find("<") + 1 : line.find(">")]
            self.rcpts.append(addr)
            reply = s.rcpt.get(addr, "250 2.1.5 ok")
            if s.rcpt_limit is not None and len(self.accepted) >= s.rcpt_limit:
                reply = "452 4.5.3 too many recipients"
            if isinstance(reply, list):
                reply = reply.pop(0) if len(reply) > 1 else reply[0]
            if reply.startswith("2"):
                self.accepted.append(addr)
            self._reply(verb, reply + "\r\n")
        elif verb == "DATA":
            if self.mail_from is None or not self.accepted:
                self._reply(verb, "554 5.5.1 no valid recipients\r\n")
            else:
                self.in_data = True
                self._reply(verb, "354 go ahead\r\n")
        elif verb == "RSET":
            self.mail_from, self.rcpts, self.accepted = None, [], []
            self._reply(verb, "250 2.0.0 ok\r\n")
        elif verb == "QUIT":
            self._session_over()
            self.transport.write(b"221 2.0.0 bye\r\n")
            self.transport.loseConnection()
        else:
            self._reply(verb, "502 5.5.2 unknown\r\n")

    def _check_plain(self, token: str):
        import base64

        try:
            _, user, pw = base64.b64decode(token).decode().split("\0")
        except ValueError:
            self._reply("AUTH", "501 5.5.2 bad\r\n")
            return
        self._auth_result(user, pw)

    def _auth_result(self, user, pw):
        if self.f.script.auth.get(user) == pw and self.tls:
            self.authenticated = user
            self.f.auth_users.append(user)
            self._reply("AUTH", "235 2.7.0 ok\r\n")
        else:
            self._reply("AUTH", "535 5.7.8 bad credentials\r\n")

    def _auth_step(self, line: str):
        import base64

        self.auth_state.append(base64.b64decode(line).decode())
        if len(self.auth_state) == 2:
            self._reply("AUTH", "334 UGFzc3dvcmQ6\r\n")
        else:
            _, user, pw = self.auth_state
            self.auth_state = None
            self._auth_result(user, pw)


class ScriptedFactory(protocol.Factory):
    protocol = ScriptedSmtp

    def __init__(self, script: Script, tls_options):
        self.script = script
        self.tls_options = tls_options
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.data_count = 0
        self.transactions: list[Transaction] = []
        self.commands: list[str] = []
        self.mail_lines: list[str] = []
        self.rcpt_lines: list[str] = []
        self.auth_users: list[str] = []


@pytest.fixture(scope="session")
def sink_tls(tmp_path_factory):
    """(server TLS options, path of their self-signed certificate, made for "sink.test")."""
    cfg = replace(Config(), hostname="sink.test", data_dir=tmp_path_factory.mktemp("tls"))
    cfg = replace(
        cfg,
        tls=replace(cfg.tls, cert=cfg.data_dir / "c.pem", key=cfg.data_dir / "c.key"),
    )
    return TlsContexts(cfg).server_options(), cfg.tls.cert


@pytest.fixture(scope="session")
def tls_options(sink_tls):
    return sink_tls[0]


@pytest.fixture
def sink(tls_options):
    """A scripted SMTP server on 127.0.0.1; returns its factory (script, port, records)."""
    ensure_reactor()
    script = Script()
    factory = ScriptedFactory(script, tls_options)

    def listen():
        from twisted.protocols.tls import TLSMemoryBIOFactory

        wrapped = TLSMemoryBIOFactory(tls_options, False, factory)
        plain = reactor.listenTCP(0, factory, interface="127.0.0.1")
        tls = reactor.listenTCP(0, wrapped, interface="127.0.0.1")
        return plain, tls

    plain, tls = in_reactor(listen)
    factory.port = plain.getHost().port
    factory.tls_port = tls.getHost().port
    yield factory
    in_reactor(plain.stopListening)
    in_reactor(tls.stopListening)


@pytest.fixture
def sink6(tls_options):
    """The scripted server on [::1] only."""
    ensure_reactor()
    factory = ScriptedFactory(Script(), tls_options)
    port = in_reactor(reactor.listenTCP, 0, factory, interface="::1")
    factory.port = port.getHost().port
    factory.address = "::1"
    yield factory
    in_reactor(port.stopListening)


def relay_config(tmp_path: Path, **relay) -> Config:
    """A config for relay tests: short timeouts and retries in seconds."""
    base = dict(
        retry_schedule=[1],
        command_timeout=5,
        data_timeout=5,
        connect_timeout=2,
        dns_timeout=2,
        scan_interval=0.1,
    )
    base.update(relay)
    return replace(
        Config(),
        hostname="mail.example.test",
        domains=["example.test"],
        data_dir=tmp_path,
        relay=RelayConfig(**base),
    )


# -- a sending mailsuite (shared services + the queue runner) ----------------------------


class Sender:
    """Real Services on a temp data_dir with the queue runner running in the reactor."""

    def __init__(self, config: Config):
        from mailsuite.relay.runner import build_service
        from mailsuite.services import Services

        self.config = config
        self.services = Services.create(config, with_tls=False)
        self.services.accounts.add_user("sender@example.test", "pw")
        self.runner = build_service(self.services, self.services.delivery.deliver_notice)
        self.running = False

    def start(self) -> None:
        in_reactor(self.runner.startService)
        wait_for(lambda: self.runner.ready)
        self.running = True

    def stop(self) -> None:
        if self.running:
            in_reactor(self.runner.stopService)
            self.running = False

    def submit(self, mail_from, rcpts, data, ret=None, envid=None):
        """Through services.delivery, as the SMTP server does; returns the queue id."""
        from mailsuite.delivery import Envelope, Recipient

        recipients = [r if isinstance(r, Recipient) else Recipient(r, (), None) for r in rcpts]
        env = Envelope(mail_from, recipients, ret, envid, None, "127.0.0.1", "client.test")
        report = in_reactor(self.services.delivery.deliver, env, data)
        return report.queue_id

    def queue_ids(self) -> list[str]:
        return self.services.queue.ids()

    def wait_empty(self, timeout: float = 10.0) -> None:
        wait_for(lambda: not self.queue_ids() and not self.runner.active, timeout)

    def mailbox(self, address: str = "sender@example.test") -> list[bytes]:
        """Messages in a local user's Maildir INBOX (new/ and cur/), read as any tool would."""
        base = self.services.store.path_for(address)
        out = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                out += [p.read_bytes() for p in sorted(d.iterdir())]
        return out
