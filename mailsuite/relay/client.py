"""The ESMTP client that hands queued mail to another server, on twisted.internet.

One ``SmtpConnection`` is one session: greeting, EHLO, STARTTLS, AUTH, then any number of
transactions, each returning a result per recipient.  The wire details that must be exact live
in pure functions (``encode_data``, ``parse_ehlo``, ``mail_command``) so they can be tested
without sockets; the Protocol only buffers replies and enforces the timeouts of RFC 5321
§4.5.3.2.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from dataclasses import dataclass, field

from OpenSSL import SSL
from twisted.internet import defer, endpoints, error, protocol, ssl, threads
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IPullProducer,
)
from twisted.logger import Logger
from zope.interface import implementer

from mailsuite.logtext import visible
from mailsuite.relay.downgrade import to_7bit
from mailsuite.relay.mx import Destination
from mailsuite.relay.reply import DeliveryFailure, Reply, ReplyParseError, ReplyParser
from mailsuite.transport import WriteThroughTCPEndpoint

log = Logger()

CHUNK = 64 * 1024


# -- pure wire formatting -----------------------------------------------------------------


def encode_data(data: bytes) -> bytes:
    """The DATA stream for a message: CRLF line ends, dot-stuffed, ending in CRLF.CRLF.

    Stuffing is done on the whole message before it is cut into chunks, so a line of "." that
    straddles any write boundary is still escaped (the 16 KiB bug of twisted.mail's client).
    """
    # The wire needs CRLF (RFC 5321 §2.3.8).  A message that has it on every line (as the SMTP
    # server stores what it receives) is left as it is: two counts instead of two copies.
    # Otherwise two bytes.replace passes: a regular expression substitution with one match
    # per line was ten times slower (21 against 2 us for a 2 KB message).
    first = data.find(b"\n")
    if first > 0 and data[first - 1] == 13 and data.count(b"\n") == data.count(b"\r\n"):
        body = data
    else:
        body = data.replace(b"\r\n", b"\n") if b"\r" in data else data
        body = body.replace(b"\n", b"\r\n")
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    # RFC 5321 §4.5.2: a line starting with "." gets one more "." in front.
    body = body.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) to their parameters, the first line being the greeting."""
    ext: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            ext[keyword.upper()] = params.strip()
    return ext


def needs_smtputf8(mail_from: str, recipients: list[str]) -> bool:
    """RFC 6531 §3.2: non-ASCII envelope addresses cannot be sent without SMTPUTF8."""
    return not all(a.isascii() for a in [mail_from, *recipients])


def has_utf8_headers(data: bytes) -> bool:
    """RFC 6532 UTF-8 header fields: announced with SMTPUTF8 when the server offers it, sent
    as they are otherwise (as Postfix does for mail not submitted with SMTPUTF8)."""
    end = data.find(b"\n\n")
    end2 = data.find(b"\r\n\r\n")
    ends = [e for e in (end, end2) if e >= 0]
    header = data[: min(ends)] if ends else data
    if header.isascii():
        return False
    try:
        header.decode("utf-8")
    except UnicodeDecodeError:
        # Raw 8-bit legacy headers are not UTF-8 mail; send them as they are, like Postfix.
        return False
    return True


def is_8bit(data: bytes) -> bool:
    return not data.isascii()


_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*\Z")


def as_xtext(value: str) -> str:
    """RFC 3461 §4: values already in xtext pass as they are (the SMTP server keeps them as
    sent); raw ones, such as the "rfc822;user+tag@x" the delivery layer makes up, get "+",
    "=", controls and non-ASCII octets written as "+XX"."""
    if _XTEXT.match(value):
        return value
    return "".join(
        chr(b) if 0x21 <= b <= 0x7E and b not in (0x2B, 0x3D) else f"+{b:02X}"
        for b in value.encode("utf-8")
    )


def orcpt_param(orcpt: str) -> str:
    kind, sep, addr = orcpt.partition(";")
    if not sep:
        return "rfc822;" + as_xtext(orcpt)
    return f"{kind.strip()};{as_xtext(addr.strip())}"


def mail_command(
    mail_from: str,
    ext: dict[str, str],
    size: int,
    eight_bit: bool,
    smtputf8: bool,
    dsn_ret: str | None,
    dsn_envid: str | None,
) -> bytes:
    """MAIL FROM with only the parameters the server advertised."""
    parts = [f"MAIL FROM:<{mail_from}>"]
    if "SIZE" in ext:
        parts.append(f"SIZE={size}")  # RFC 1870 §6
    if eight_bit and "8BITMIME" in ext:
        parts.append("BODY=8BITMIME")  # RFC 6152 §3
    if smtputf8:
        parts.append("SMTPUTF8")  # RFC 6531 §3.4
    if "DSN" in ext:
        # RFC 3461 §4.3/§4.4: pass the sender's DSN requests on.
        if dsn_ret:
            parts.append(f"RET={dsn_ret}")
        if dsn_envid:
            parts.append(f"ENVID={as_xtext(dsn_envid)}")
    return (" ".join(parts) + "\r\n").encode("utf-8")


def rcpt_command(address: str, ext: dict[str, str], notify, orcpt: str | None) -> bytes:
    parts = [f"RCPT TO:<{address}>"]
    if "DSN" in ext:
        if notify:
            parts.append("NOTIFY=" + ",".join(notify))  # RFC 3461 §4.1
        if orcpt:
            parts.append(f"ORCPT={orcpt_param(orcpt)}")  # RFC 3461 §4.2
    return (" ".join(parts) + "\r\n").encode("utf-8")


# -- results ------------------------------------------------------------------------------


@dataclass
class RecipientOutcome:
    address: str
    # "delivered", "temporary" or "permanent"
    result: str
    status: str
    diagnostic: str
    remote_mta: str


@dataclass
class Timeouts:
    """RFC 5321 §4.5.3.2 client timeouts, in seconds."""

    connect: float = 30
    greeting: float = 300  # §4.5.3.2.1
    command: float = 300  # §4.5.3.2.2/3 MAIL, RCPT (and EHLO, STARTTLS, AUTH)
    data_init: float = 120  # §4.5.3.2.4
    data_block: float = 180  # §4.5.3.2.5
    data_end: float = 600  # §4.5.3.2.6

    @classmethod
    def from_config(cls, relay) -> Timeouts:
        ct = float(relay.command_timeout)
        return cls(
            connect=float(relay.connect_timeout),
            greeting=ct,
            command=ct,
            data_init=min(ct, 120.0),
            data_block=min(ct, 180.0),
            data_end=float(relay.data_timeout),
        )


@dataclass
class SessionParams:
    helo: str
    # "none", "opportunistic", "required" (STARTTLS must succeed) or "implicit" (port 465)
    tls: str = "opportunistic"
    timeouts: Timeouts = field(default_factory=Timeouts)
    username: str | None = None
    password: str | None = None
    # Check the server's certificate and name (smarthost tls_verify), against ca_file or the
    # system's trusted CAs.
    verify: bool = False
    ca_file: str | None = None


class ReplyTimeout(Exception):
    pass


# -- TLS ----------------------------------------------------------------------------------


@implementer(IOpenSSLClientConnectionCreator)
class _UnverifiedClientTls:
    """Encrypt without verifying, with SNI: opportunistic TLS as RFC 7435 describes it.

    Verification would turn a self-signed MX into a bounce; MX hosts are not authenticated
    by plain DNS anyway, so Postfix's default ("may") is the same.
    """

    def __init__(self, hostname: str):
        self.hostname = hostname
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        self.ctx = ctx

    def clientConnectionForTLS(self, tlsProtocol):  # noqa: N802 (Twisted interface)
        conn = SSL.Connection(self.ctx, None)
        conn.set_app_data(tlsProtocol)
        try:
            conn.set_tlsext_host_name(self.hostname.encode("idna"))
        except (UnicodeError, ValueError):
            pass
        conn.set_connect_state()
        return conn


def tls_creator(hostname: str, verify: bool = False, ca_file: str | None = None):
    """The client TLS for one server: opportunistic (no checks) unless `verify`, where the
    certificate must chain to ca_file (or the system's CAs) and name `hostname`; a failed
    check ends the connection before anything more is sent (TlsHandshakeFailed)."""
    if not verify:
        return _UnverifiedClientTls(hostname)
    if ca_file:
        with open(ca_file, "rb") as f:
            pem = f.read()
        blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
        trust = ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(b) for b in blocks])
    else:
        trust = ssl.platformTrust()
    return ssl.optionsForClientTLS(
        hostname,
        trustRoot=trust,
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2},
    )


# -- protocol -----------------------------------------------------------------------------


@implementer(IHandshakeListener)
class SmtpClientProtocol(protocol.Protocol):
    """Buffers replies and hands them to whoever awaits ``read_reply``, with a timeout each.

    The timeouts share one timer per connection that is never cancelled while the session
    lives: each wait only sets its deadline, and a timer that fires before the deadline of the
    wait then under way sets itself again for the rest.  A timer set and cancelled for every
    reply would cost more than the rest of the wait."""

    def __init__(self) -> None:
        self.parser = ReplyParser()
        self.replies: deque[Reply] = deque()
        self.waiter: defer.Deferred | None = None
        self.timer = None
        self.deadline = 0.0  # of the wait under way (reactor.seconds())
        self.waited = 0.0  # its timeout, for the error
        self.lost: Exception | None = None
        self.handshake: defer.Deferred | None = None
        self.closed: defer.Deferred = defer.Deferred()
        self.reactor = None  # set by the factory

    def connectionMade(self) -> None:  # noqa: N802
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            self.replies.extend(self.parser.feed(data))
        except ReplyParseError as e:
            log.warn("relay: bad reply from server: {e}", e=visible(e))
            self._fail(e)
            self.transport.abortConnection()
            return
        self._deliver()

    def connectionLost(self, reason) -> None:  # noqa: N802
        exc = reason.value if reason is not None else error.ConnectionDone()
        if self.lost is None:
            self.lost = exc
        if self.handshake is not None:
            d, self.handshake = self.handshake, None
            d.errback(self.lost)
        self._fail(self.lost)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if not self.closed.called:
            self.closed.callback(None)

    def handshakeCompleted(self) -> None:  # noqa: N802
        if self.handshake is not None:
            d, self.handshake = self.handshake, None
            d.callback(None)

    def _fail(self, exc: Exception) -> None:
        if self.lost is None:
            self.lost = exc
        if self.waiter is not None:
            d, self.waiter = self.waiter, None
            d.errback(exc)

    def _deliver(self) -> None:
        if self.waiter is not None and self.replies:
            d, self.waiter = self.waiter, None
            d.callback(self.replies.popleft())

    def read_reply(self, timeout: float) -> defer.Deferred:
        if self.replies:
            return defer.succeed(self.replies.popleft())
        if self.lost is not None:
            return defer.fail(self.lost)
        assert self.waiter is None, "one reply reader at a time"
        self.waiter = defer.Deferred()
        self.deadline = self.reactor.seconds() + timeout
        self.waited = timeout
        timer = self.timer
        if timer is None:
            self.timer = self.reactor.callLater(timeout, self._check_deadline)
        elif timer.getTime() > self.deadline:
            timer.reset(timeout)
        return self.waiter

    def _check_deadline(self) -> None:
        self.timer = None
        if self.waiter is None:
            return  # nothing awaited: the next wait sets a timer again
        left = self.deadline - self.reactor.seconds()
        if left > 0:
            self.timer = self.reactor.callLater(left, self._check_deadline)
            return
        self._fail(ReplyTimeout(f"no reply within {self.waited:g} s"))
        self.transport.abortConnection()

    def send(self, *lines: bytes) -> None:
        self.transport.writeSequence(list(lines))

    def start_tls(self, creator) -> defer.Deferred:
        # RFC 3207 §4: anything the server sent before the handshake is void.
        self.replies.clear()
        self.parser = ReplyParser()
        self.handshake = defer.Deferred()
        self.transport.startTLS(creator)
        return self.handshake


@implementer(IPullProducer)
class _BodyProducer:
    """Writes the encoded message in chunks as the transport drains (flat memory use), and
    aborts when a chunk is not taken within the data-block timeout (RFC 5321 §4.5.3.2.5)."""

    def __init__(self, proto: SmtpClientProtocol, payload: bytes, block_timeout: float):
        self.proto = proto
        self.view = memoryview(payload)
        self.pos = 0
        self.block_timeout = block_timeout
        self.done = defer.Deferred()
        self.timer = None

    def start(self) -> defer.Deferred:
        self.proto.transport.registerProducer(self, False)
        return self.done

    def _arm(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = self.proto.reactor.callLater(self.block_timeout, self._stalled)

    def _stalled(self) -> None:
        self.timer = None
        if not self.done.called:
            self.done.errback(ReplyTimeout("data block not accepted in time"))
        self.proto.transport.abortConnection()

    def resumeProducing(self) -> None:  # noqa: N802
        if self.done.called:
            return
        if self.proto.lost is not None:
            self.stopProducing()
            return
        chunk = self.view[self.pos : self.pos + CHUNK]
        self.pos += len(chunk)
        self._arm()
        self.proto.transport.write(bytes(chunk))
        if self.pos >= len(self.view):
            if self.timer is not None and self.timer.active():
                self.timer.cancel()
            self.proto.transport.unregisterProducer()
            self.done.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if not self.done.called:
            self.done.errback(self.proto.lost or error.ConnectionLost())


# -- session ------------------------------------------------------------------------------


class _ClientFactory(protocol.Factory):
    protocol = SmtpClientProtocol

    def __init__(self, reactor):
        self.reactor = reactor

    def buildProtocol(self, addr):  # noqa: N802
        proto = super().buildProtocol(addr)
        proto.reactor = self.reactor
        return proto


class SmtpConnection:
    """One client session with one destination."""

    def __init__(self, proto: SmtpClientProtocol, dest: Destination, params: SessionParams):
        self.proto = proto
        self.dest = dest
        self.params = params
        self.ext: dict[str, str] = {}
        self.tls = params.tls == "implicit"
        self.transactions = 0
        # A transaction was started and not finished by a reply to its data: RSET first.
        self.dirty = False

    @property
    def remote_mta(self) -> str:
        return self.dest.host

    def _failure(self, reply: Reply, detail: str = "0.0") -> DeliveryFailure:
        return DeliveryFailure.from_reply(reply, self.remote_mta, detail)

    def _lost(self, exc: Exception, during: str) -> DeliveryFailure:
        # RFC 3463 §3.5: 4.4.2 bad connection; timeouts are 4.4.2 too (no answer in time).
        return DeliveryFailure(
            "4.4.2", f"{during}: {exc or type(exc).__name__}", remote_mta=self.remote_mta
        )

    async def _read(self, timeout: float, during: str) -> Reply:
        try:
            return await self.proto.read_reply(timeout)
        except (ReplyTimeout, ReplyParseError, error.ConnectionLost, error.ConnectionDone) as e:
            raise self._lost(e, during) from None
        except Exception as e:  # TLS errors surface here as connection loss reasons
            raise self._lost(e, during) from None

    async def open(self) -> None:
        """Greeting, EHLO, STARTTLS (RFC 3207) and AUTH (RFC 4954); raises DeliveryFailure."""
        t = self.params.timeouts
        greeting = await self._read(t.greeting, "waiting for greeting")
        if not greeting.positive:
            raise self._failure(greeting)
        await self._ehlo()
        if self.params.tls in ("opportunistic", "required") and not self.tls:
            if "STARTTLS" in self.ext:
                await self._starttls()
            elif self.params.tls == "required":
                # RFC 3207 §4.1 / RFC 3463 5.7.10-ish: we refuse to send in the clear.
                raise DeliveryFailure(
                    "4.7.4", "TLS required but not offered by server", remote_mta=self.remote_mta
                )
        if self.params.username:
            await self._auth()

    async def _ehlo(self) -> None:
        t = self.params.timeouts
        self.proto.send(f"EHLO {self.params.helo}\r\n".encode())
        reply = await self._read(t.command, "after EHLO")
        if reply.positive:
            self.ext = parse_ehlo(reply)
            return
        if reply.code in (500, 502, 554) or reply.permanent:
            # RFC 5321 §3.2: an old server without EHLO gets HELO.
            self.proto.send(f"HELO {self.params.helo}\r\n".encode())
            reply = await self._read(t.command, "after HELO")
            if reply.positive:
                self.ext = {}
                return
        raise self._failure(reply)

    async def _starttls(self) -> None:
        t = self.params.timeouts
        self.proto.send(b"STARTTLS\r\n")
        reply = await self._read(t.command, "after STARTTLS")
        if reply.code != 220:
            if self.params.tls == "required":
                raise self._failure(reply)
            # Opportunistic: RFC 3207 §4 lets us carry on in the clear on the same session.
            return
        try:
            p = self.params
            await self.proto.start_tls(tls_creator(self.dest.host, p.verify, p.ca_file))
        except Exception as e:
            raise TlsHandshakeFailed(
                "4.7.5", f"TLS handshake failed: {e}", remote_mta=self.remote_mta
            ) from None
        self.tls = True
        # RFC 3207 §4.2: forget everything learnt before TLS and ask again.
        self.ext = {}
        await self._ehlo()

    async def _auth(self) -> None:
        t = self.params.timeouts
        user = self.params.username or ""
        password = self.params.password or ""
        if not self.tls and self.params.tls != "none":
            raise DeliveryFailure(
                "4.7.10", "refusing to send credentials without TLS", remote_mta=self.remote_mta
            )
        mechs = self.ext.get("AUTH", "").upper().split()
        if "PLAIN" in mechs:
            token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
            self.proto.send(b"AUTH PLAIN " + token + b"\r\n")  # RFC 4616 initial response
            reply = await self._read(t.command, "after AUTH")
        elif "LOGIN" in mechs:
            self.proto.send(b"AUTH LOGIN\r\n")
            reply = await self._read(t.command, "after AUTH")
            for secret in (user, password):
                if reply.code != 334:
                    break
                self.proto.send(base64.b64encode(secret.encode()) + b"\r\n")
                reply = await self._read(t.command, "during AUTH LOGIN")
        else:
            raise DeliveryFailure(
                "4.7.12", "server offers neither AUTH PLAIN nor LOGIN", remote_mta=self.remote_mta
            )
        if reply.code != 235:
            # Like Postfix's smtp_sasl_auth_soft_bounce: a credentials problem defers, so a
            # fixed password delivers the queue instead of bouncing it.
            raise DeliveryFailure(
                "4.7.8", f"authentication failed: {reply.wire()}", reply.wire(), self.remote_mta
            )

    async def send_message(
        self,
        mail_from: str,
        recipients: list,
        data: bytes,
        dsn_ret: str | None = None,
        dsn_envid: str | None = None,
    ) -> list[RecipientOutcome]:
        """One transaction; ``recipients`` have .address, .notify, .orcpt.

        Failures of the whole transaction come back as one outcome per recipient; only a lost
        connection raises (DeliveryFailure), since the session is then unusable.
        """
        t = self.params.timeouts
        addrs = [r.address for r in recipients]
        if self.dirty:
            # RFC 5321 §4.1.1.5: abort what a refused MAIL/RCPT left behind.  After a finished
            # DATA the session is already clean (§3.3), so a cached session sends no RSET.
            self.proto.send(b"RSET\r\n")
            reply = await self._read(t.command, "after RSET")
            if not reply.positive:
                raise self._failure(reply)
            self.dirty = False
        self.transactions += 1

        utf8 = needs_smtputf8(mail_from, addrs)
        if utf8 and "SMTPUTF8" not in self.ext:
            # RFC 6531 §3.2: no downgrade; RFC 6533 §3: 5.6.7 non-ASCII not permitted.
            return self._all(
                addrs,
                "permanent",
                "5.6.7",
                "message needs SMTPUTF8 but the server does not offer it",
            )
        limit = self.ext.get("SIZE", "")
        if limit.isdigit() and int(limit) > 0 and len(data) > int(limit):
            # RFC 1870 §6.1: don't send what the server declared too big.
            return self._all(
                addrs,
                "permanent",
                "5.3.4",
                f"message size {len(data)} exceeds server limit {limit}",
            )
        utf8 = utf8 or ("SMTPUTF8" in self.ext and has_utf8_headers(data))
        if not utf8 and "8BITMIME" not in self.ext and is_8bit(data):
            # RFC 6152 §3: no 8-bit data to a server without 8BITMIME; convert (parsing the
            # whole message, so in a thread).
            data = await threads.deferToThread(to_7bit, data)
        payload = encode_data(data)
        mail = mail_command(
            mail_from, self.ext, len(payload), is_8bit(data), utf8, dsn_ret, dsn_envid
        )
        rcpts = [rcpt_command(r.address, self.ext, r.notify, r.orcpt) for r in recipients]

        self.dirty = True
        if "PIPELINING" in self.ext:
            # RFC 2920 §3.1: MAIL, RCPTs and DATA in one group; replies come back in order.
            self.proto.send(mail, *rcpts, b"DATA\r\n")
            mail_reply = await self._read(t.command, "after MAIL FROM")
            rcpt_replies = [await self._read(t.command, "after RCPT TO") for _ in rcpts]
            data_reply = await self._read(t.data_init, "after DATA")
        else:
            self.proto.send(mail)
            mail_reply = await self._read(t.command, "after MAIL FROM")
            rcpt_replies, data_reply = [], None
            if mail_reply.positive:
                for cmd in rcpts:
                    self.proto.send(cmd)
                    rcpt_replies.append(await self._read(t.command, "after RCPT TO"))
                if any(r.positive for r in rcpt_replies):
                    self.proto.send(b"DATA\r\n")
                    data_reply = await self._read(t.data_init, "after DATA")

        if not mail_reply.positive:
            if data_reply is not None and data_reply.code == 354:
                await self._abort_data()
            return self._all_reply(addrs, mail_reply, "1.0")
        accepted = [a for a, r in zip(addrs, rcpt_replies, strict=True) if r.positive]
        outcomes = {
            a: self._outcome(a, r, "1.0")
            for a, r in zip(addrs, rcpt_replies, strict=True)
            if not r.positive
        }
        if not accepted:
            if data_reply is not None and data_reply.code == 354:
                await self._abort_data()
            return [outcomes[a] for a in addrs]
        if data_reply is None or data_reply.code != 354:
            for a in accepted:
                outcomes[a] = self._outcome(a, data_reply, "0.0")
            return [outcomes[a] for a in addrs]

        if len(payload) <= CHUNK:
            self.proto.send(payload)  # one write: small messages need no producer
        else:
            try:
                await _BodyProducer(self.proto, payload, t.data_block).start()
            except Exception as e:
                raise self._lost(e, "while sending message data") from None
        final = await self._read(t.data_end, "after end of data")
        self.dirty = False
        for a in accepted:
            outcomes[a] = self._outcome(a, final, "0.0")
        return [outcomes[a] for a in addrs]

    async def _abort_data(self) -> None:
        # A server that said 354 with no valid recipient gets an empty message it will reject.
        self.proto.send(b".\r\n")
        await self._read(self.params.timeouts.data_end, "after empty data")
        self.dirty = False

    def _outcome(self, address: str, reply: Reply, detail: str) -> RecipientOutcome:
        if reply.positive:
            kind = "delivered"
        elif reply.transient:
            kind = "temporary"
        else:
            kind = "permanent"
        return RecipientOutcome(address, kind, reply.status(detail), reply.wire(), self.remote_mta)

    def _all_reply(self, addrs: list[str], reply: Reply, detail: str) -> list[RecipientOutcome]:
        return [self._outcome(a, reply, detail) for a in addrs]

    def _all(self, addrs, kind, status, text) -> list[RecipientOutcome]:
        return [RecipientOutcome(a, kind, status, text, self.remote_mta) for a in addrs]

    async def quit(self) -> None:
        """QUIT politely but never wait long: the mail is already handed over.  Returns once
        the connection is closed, so connection limits count it until then."""
        if self.proto.lost is not None:
            return
        wait = min(5.0, self.params.timeouts.command)
        try:
            self.proto.send(b"QUIT\r\n")
            await self.proto.read_reply(wait)
        except Exception:
            pass
        if self.proto.lost is None:
            self.proto.transport.loseConnection()
            timer = self.proto.reactor.callLater(wait, self.abort)
            await self.proto.closed
            if timer.active():
                timer.cancel()

    def abort(self) -> None:
        if not self.proto.closed.called:
            self.proto.transport.abortConnection()

    @property
    def usable(self) -> bool:
        return self.proto.lost is None


class TlsHandshakeFailed(DeliveryFailure):
    """STARTTLS was accepted but the handshake failed; opportunistic TLS retries in clear."""


async def connect(dest: Destination, params: SessionParams, reactor=None) -> SmtpConnection:
    """Connect and run the session opening; raises DeliveryFailure (temporary or permanent)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    ep = WriteThroughTCPEndpoint(reactor, dest.address, dest.port, params.timeouts.connect)
    if params.tls == "implicit":
        # RFC 8314 §3: implicit TLS from the first byte (smarthost port 465).
        ep = endpoints.wrapClientTLS(tls_creator(dest.host, params.verify, params.ca_file), ep)
    try:
        proto = await ep.connect(_ClientFactory(reactor))
    except Exception as e:
        raise DeliveryFailure(
            "4.4.1",
            f"connect to {dest.host}[{dest.address}]:{dest.port} failed: {e}",
            remote_mta=dest.host,
        ) from None
    conn = SmtpConnection(proto, dest, params)
    try:
        await conn.open()
    except BaseException:
        conn.abort()
        raise
    return conn
