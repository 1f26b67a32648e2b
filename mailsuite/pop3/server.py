"""The POP3 server Protocol (RFC 1939, CAPA RFC 2449, STLS RFC 2595, AUTH RFC 5034, UTF8 RFC 6856).

Thin: it frames lines, hands them to `pop3/parser.py`, runs one command at a time against the
store and the authenticator, and writes whole replies. Message bodies above a small size are
streamed from disk by `BodyStreamer`, a push producer, so memory stays flat and a slow client
slows the reads down (back-pressure).
"""

from __future__ import annotations

import itertools
import weakref

from twisted.internet import defer, threads
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from mailsuite import sasl
from mailsuite.accounts.checker import AuthFailed, AuthThrottled
from mailsuite.config import ConfigError
from mailsuite.listener import SessionFactory
from mailsuite.pop3.maildrop import Entry, Maildrop
from mailsuite.pop3.parser import (
    AUTH,
    CRLF,
    IN_USE,
    LOGIN_DELAY,
    SYS_PERM,
    SYS_TEMP,
    CapaOptions,
    LineSplitter,
    LineTooLong,
    Pop3Error,
    WireEncoder,
    capa_lines,
    check_uidl_format,
    encode_message,
    err,
    format_uidl,
    listing,
    multiline,
    ok,
    parse_command,
    parse_line_count,
    parse_message_number,
)
from mailsuite.pop3.registry import registry_for
from mailsuite.store import NoSuchMailbox
from mailsuite.tls import is_secure

log = Logger(namespace="mailsuite.pop3")

# Per folder: the listings of its current message set, shared by the sessions that see it.
_LISTINGS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _shared_listings(folder, version: tuple) -> dict:
    held = _LISTINGS.get(folder)
    if held is None or held[0] != version:
        held = _LISTINGS[folder] = (version, {})
    return held[1]


AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"
# Messages up to this size are read in one go on the reactor (a page-cache read of a small file
# is cheaper than a thread hop); bigger ones are streamed in chunks read in the thread pool.
SMALL_MESSAGE = 128 * 1024
PIECE = 64 * 1024
PIECES_PER_READ = 8
# Pipelined input kept while a command runs before we stop reading from the socket.
MAX_PENDING_INPUT = 64 * 1024
_session_ids = itertools.count(1)

PLAINTEXT_REFUSED = "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."


class StreamAborted(Exception):
    """The connection went away in the middle of a streamed body."""


@implementer(IPushProducer)
class BodyStreamer:
    """Writes one message's wire form from an open file, chunk by chunk, with back-pressure.

    Reads and LF→CRLF/dot-stuffing run in the thread pool; writes happen on the reactor. The
    transport pauses us when its buffer is full and resumes us when it drains. One chunk is
    read ahead while paused, so the disk/encoding work overlaps with sending; memory stays at
    about two chunks whatever the message size. `deferred` fires once ".CRLF" is written.
    """

    def __init__(self, transport, fileobj, encoder: WireEncoder, on_progress=None):
        self.transport = transport
        self.file = fileobj
        self.encoder = encoder
        self.on_progress = on_progress
        self.deferred: defer.Deferred = defer.Deferred()
        self._paused = False
        self._reading = False
        self._ready: tuple[list[bytes], bool] | None = None
        self._eof = False
        self._stopped = False

    def start(self) -> defer.Deferred:
        self.transport.registerProducer(self, True)
        self._next()
        return self.deferred

    def _read(self) -> tuple[list[bytes], bool]:
        # Several cache-sized pieces per thread hop (512 KiB): encoding 64 KiB at a time stays
        # in the CPU cache (3x faster than one big piece), and fewer hops cost less.
        out = []
        for _ in range(PIECES_PER_READ):
            data = self.file.read(PIECE)
            if not data:
                return out, True
            out.append(self.encoder.feed(data))
            if self.encoder.done:
                return out, True
        return out, False

    def _next(self) -> None:
        if self._stopped:
            return
        if self._ready is not None and not self._paused:
            out, last = self._ready
            self._ready = None
            if last:
                out.append(self.encoder.finish())
                self.transport.writeSequence(out)
                self._end()
                self.deferred.callback(None)
                return
            self.transport.writeSequence(out)
            if self.on_progress is not None:
                self.on_progress()
            if self._stopped:
                return
        if not self._reading and self._ready is None and not self._eof:
            self._reading = True
            d = threads.deferToThread(self._read)
            d.addCallbacks(self._got, self._failed)

    def _got(self, result: tuple[list[bytes], bool]) -> None:
        self._reading = False
        if self._stopped:
            self.file.close()
            return
        self._ready = result
        self._eof = result[1]
        self._next()

    def _failed(self, failure) -> None:
        self._reading = False
        if self._stopped:
            self.file.close()
            return
        # The +OK line is out: the only honest thing left is to drop the connection.
        log.failure("reading a message for RETR/TOP failed", failure)
        self._end()
        self.transport.abortConnection()
        self.deferred.errback(StreamAborted())

    def _end(self) -> None:
        self._stopped = True
        self.transport.unregisterProducer()
        self.file.close()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._next()

    def stopProducing(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        # While a read runs in the pool the file is closed when it returns (_got/_failed).
        if not self._reading:
            self.file.close()
        self.deferred.errback(StreamAborted())


class Pop3Session(Protocol, TimeoutMixin):
    """One POP3 connection: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3)."""

    def __init__(self, services, kind: str):
        self.services = services
        self.config = services.config
        self.kind = kind
        self.registry = registry_for(services.store)
        self.state = AUTHORIZATION
        self.splitter = LineSplitter(self.config.pop3.max_command_line)
        self.session_id = next(_session_ids)
        self.client_ip = ""
        self.user: str | None = None  # from USER, waiting for PASS
        self.address: str | None = None  # logged-in mailbox
        self.mailbox = None
        self.folder = None
        self.maildrop: Maildrop | None = None
        # RFC 6856: our replies are ASCII and messages go out as stored, so UTF8 mode only
        # needs remembering (USER/PASS are decoded as UTF-8 in any case).
        self.utf8 = False
        self.bad_commands = 0
        self.sasl_mech = None
        self.busy = False
        self.pumping = False
        self.closing = False
        self.lost = False
        self.streamer: BodyStreamer | None = None
        self.last_retr = 0  # message number of the last RETR
        self.ahead: tuple[int, bytes] | None = None  # read-ahead: (UID, wire form) of the next
        self.reading_paused = False
        self.admitted_ip: str | None = None  # holds a connection-limiter slot

    # -- connection -------------------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client_ip = getattr(peer, "host", "") or ""
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass
        if not self._admit():
            return
        self.setTimeout(self.config.pop3.idle_timeout)
        log.info(
            "pop3 #{sid} connect from {ip} on {kind}",
            sid=self.session_id,
            ip=self.client_ip,
            kind=self.kind,
        )
        self.transport.write(ok("mailsuite ready."))

    def _admit(self) -> bool:
        """Connections per IP and in total (limits.*), shared by every listener."""
        limiter = getattr(self.services, "connections", None)
        if limiter is None:
            return True
        if not limiter.acquire(self.client_ip):
            log.info("pop3 refusing {ip}: too many connections", ip=self.client_ip)
            self.transport.write(err("Too many connections from your address.", SYS_TEMP))
            self.transport.loseConnection()
            self.closing = True
            return False
        self.admitted_ip = self.client_ip
        return True

    def connectionLost(self, reason=connectionDone) -> None:
        self.lost = True
        self.setTimeout(None)
        if self.streamer is not None:
            self.streamer.stopProducing()
            self.streamer = None
        if self.address is not None:
            # A dropped connection never reaches UPDATE: nothing marked with DELE is removed.
            self.registry.release(self.address, self)
        if self.admitted_ip is not None:
            self.services.connections.release(self.admitted_ip)
            self.admitted_ip = None
        log.info("pop3 #{sid} disconnected", sid=self.session_id)

    def timeoutConnection(self) -> None:
        # RFC 1939 §3: the autologout timer closes without entering UPDATE.
        log.info("pop3 #{sid} idle timeout", sid=self.session_id)
        self.transport.write(err("Disconnected for inactivity."))
        self.closing = True
        self.transport.loseConnection()

    # -- input ------------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        self.resetTimeout()
        self.splitter.feed(data)
        self._pump()

    def _pump(self) -> None:
        if self.pumping:
            return  # a Deferred that fired at once: the loop below goes on by itself
        self.pumping = True
        try:
            while not self.busy and not self.closing and not self.lost:
                line = self.splitter.next_line()
                if line is None:
                    break
                self._run_line(line)
        finally:
            self.pumping = False
        if self.busy and self.splitter.pending > MAX_PENDING_INPUT and not self.reading_paused:
            self.reading_paused = True
            self.transport.pauseProducing()
        elif not self.busy and self.reading_paused:
            self.reading_paused = False
            self.transport.resumeProducing()

    def _run_line(self, line: bytes | LineTooLong) -> None:
        try:
            if isinstance(line, LineTooLong):
                self.sasl_mech = None
                raise Pop3Error("Command line too long.", bad=True)
            if self.sasl_mech is not None:
                result = self._sasl_step(line)
            else:
                result = self._dispatch(parse_command(line))
        except Pop3Error as e:
            self._error(e)
            return
        except Exception:
            log.failure("pop3 #{sid} command failed", sid=self.session_id)
            self._write([err("Internal error, try again later.", SYS_TEMP)])
            return
        if isinstance(result, defer.Deferred):
            self.busy = True
            result.addErrback(self._deferred_error)
            result.addBoth(self._command_done)

    def _deferred_error(self, failure) -> None:
        if failure.check(Pop3Error):
            self._error(failure.value)
        elif failure.check(StreamAborted):
            pass
        else:
            log.failure("pop3 #{sid} command failed", failure, sid=self.session_id)
            self._write([err("Internal error, try again later.", SYS_TEMP)])

    def _command_done(self, _=None) -> None:
        self.busy = False
        if not self.lost:
            self._pump()

    def _error(self, e: Pop3Error) -> None:
        self._write([e.reply()])
        if e.bad:
            # The reason only, never the line: it may hold a password.
            log.info("pop3 #{sid} bad command: {why}", sid=self.session_id, why=e.text)
            self.bad_commands += 1
            if self.bad_commands >= self.config.limits.bad_commands:
                log.info("pop3 #{sid} too many bad commands", sid=self.session_id)
                self._write([err("Too many bad commands, closing.")])
                self._close()

    def _write(self, parts: list[bytes]) -> None:
        if not self.lost:
            self.transport.writeSequence(parts)

    def _close(self) -> None:
        self.closing = True
        self.transport.loseConnection()

    # -- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, cmd):
        handler = _COMMANDS.get(cmd.name)
        if handler is None or self.state not in handler[1]:
            if cmd.name == "APOP":
                # Passwords are stored hashed, so the APOP digest cannot be checked.
                raise Pop3Error("APOP is not supported.", bad=True)
            raise Pop3Error("Unknown command.", bad=True)
        return handler[0](self, cmd.args)

    def _login_allowed(self) -> bool:
        return self.services.plaintext_auth_allowed(is_secure(self.transport), self.client_ip)

    def _capa(self, args):
        opts = CapaOptions(
            stls=self._stls_possible(),
            login_allowed=self._login_allowed(),
            transaction=self.state != AUTHORIZATION,
            sasl_mechanisms=sasl.MECHANISMS,
            expire=self.config.pop3.expire,
            login_delay=self.config.pop3.login_delay,
        )
        self._write(multiline(ok("Capability list follows"), capa_lines(opts)))

    def _stls_possible(self) -> bool:
        return (
            self.kind == "pop3" and self.services.tls is not None and not is_secure(self.transport)
        )

    def _stls(self, args):
        if not self._stls_possible():
            raise Pop3Error("TLS is already active or not available.")
        dropped = self.splitter.discard()
        if dropped:
            # RFC 2595 §4 / DESIGN: nothing sent in clear after STLS may be executed.
            log.info("pop3 #{sid} dropped {n} octets after STLS", sid=self.session_id, n=dropped)
        self.user = None
        self._write([ok("Begin TLS negotiation now.")])
        self.transport.startTLS(self.services.tls.server_options())

    def _utf8(self, args):
        # RFC 6856 §2: only in AUTHORIZATION; afterwards names and text may be UTF-8.
        self.utf8 = True
        self._write([ok("UTF8 enabled.")])

    def _user(self, args):
        if not self._login_allowed():
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if not args or not args[0]:
            raise Pop3Error("No username given.", bad=True)
        self.user = args[0]
        self._write([ok()])

    def _pass(self, args):
        if not self._login_allowed():
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if self.user is None:
            raise Pop3Error("No username given.")
        user, self.user = self.user, None
        password = args[0] if args else ""
        return self._login(user, password)

    def _auth(self, args):
        if not self._login_allowed():
            raise Pop3Error(PLAINTEXT_REFUSED, AUTH)
        if not args:
            # Old clients send bare AUTH to get the mechanism list (pre-RFC 5034 behaviour).
            lines = [m.encode("ascii") for m in sasl.MECHANISMS]
            self._write(multiline(ok(), lines))
            return None
        try:
            mech = sasl.mechanism(args[0])
        except sasl.SaslError:
            raise Pop3Error("Unsupported authentication mechanism.") from None
        try:
            initial = sasl.decode_response(args[1]) if len(args) > 1 else None
            result = mech.start(initial)
        except sasl.SaslCancelled:
            raise Pop3Error("Authentication cancelled.", AUTH) from None
        except sasl.SaslError:
            raise Pop3Error("Invalid SASL response.", AUTH) from None
        return self._sasl_result(mech, result)

    def _sasl_step(self, line: bytes):
        mech, self.sasl_mech = self.sasl_mech, None
        try:
            result = mech.step(sasl.decode_response(line))
        except sasl.SaslCancelled:
            # RFC 5034 §4: "*" cancels; the server answers -ERR.
            raise Pop3Error("Authentication cancelled.", AUTH) from None
        except sasl.SaslError:
            raise Pop3Error("Invalid SASL response.", AUTH) from None
        return self._sasl_result(mech, result)

    def _sasl_result(self, mech, result):
        if isinstance(result, sasl.Challenge):
            self.sasl_mech = mech
            # RFC 5034 §4: a continuation is "+ " and the base64 challenge.
            self._write([b"+ " + sasl.encode_challenge(result.data) + CRLF])
            return None
        if result.authzid and result.authzid != result.username:
            raise Pop3Error("Authorization identity not permitted.", AUTH)
        return self._login(result.username, result.password)

    def _login(self, username: str, password: str) -> defer.Deferred:
        d = self.services.authenticator.login(username, password, self.client_ip, "pop3")

        def failed(failure):
            if failure.check(AuthFailed):
                log.info(
                    "pop3 #{sid} login failed for {user!r} from {ip}",
                    sid=self.session_id,
                    user=username,
                    ip=self.client_ip,
                )
                raise Pop3Error("Authentication failed.", AUTH, bad=True)
            if failure.check(AuthThrottled):
                raise Pop3Error("Too many failed logins; try again later.", SYS_TEMP)
            if failure.check(Pop3Error):
                return failure
            log.failure("pop3 #{sid} authentication error", failure, sid=self.session_id)
            raise Pop3Error("Temporary authentication failure.", SYS_TEMP)

        d.addCallbacks(self._open_maildrop, failed)
        return d

    def _open_maildrop(self, address: str) -> None:
        if self.lost:
            return
        left = self.registry.login_delay_left(address, self.config.pop3.login_delay)
        if left:
            # RFC 2449 §8.1.1: logging in again before LOGIN-DELAY has passed.
            raise Pop3Error(f"Wait {int(left) + 1} seconds before logging in again.", LOGIN_DELAY)
        if not self.registry.acquire(address, self):
            raise Pop3Error("Mailbox is locked by another POP3 session.", IN_USE)
        try:
            mailbox = self.services.store.mailbox(address)
            folder = mailbox.folder("INBOX")
            folder.refresh()
        except NoSuchMailbox:
            self.registry.release(address, self)
            log.warn("pop3 #{sid} {addr} has no mailbox", sid=self.session_id, addr=address)
            raise Pop3Error("Mailbox unavailable.", SYS_PERM) from None
        except OSError:
            self.registry.release(address, self)
            log.failure("pop3 #{sid} opening INBOX of {addr}", sid=self.session_id, addr=address)
            raise Pop3Error("Mailbox unavailable.", SYS_TEMP) from None
        self.address, self.mailbox, self.folder = address, mailbox, folder
        fmt = self.config.pop3.uidl_format
        uidvalidity = folder.uidvalidity
        self.maildrop = Maildrop(
            (Entry(m.uid, m.wire_size, m.key) for m in folder.messages),
            lambda e: format_uidl(fmt, e.uid, uidvalidity, e.key),
            _shared_listings(folder, (folder.membership_version, uidvalidity, fmt)),
        )
        self.registry.record_login(address)
        self.state = TRANSACTION
        count, octets = self.maildrop.stat()
        log.info(
            "pop3 #{sid} login {addr} from {ip}: {n} messages",
            sid=self.session_id,
            addr=address,
            ip=self.client_ip,
            n=count,
        )
        self._write([ok("Logged in.")])

    # -- TRANSACTION ------------------------------------------------------------------------

    def _stat(self, args):
        count, octets = self.maildrop.stat()
        self._write([ok(f"{count} {octets}")])

    def _list(self, args):
        if args:
            n = parse_message_number(args[0])
            self._write([ok(f"{n} {self.maildrop.get(n).octets}")])
            return
        count, octets = self.maildrop.stat()
        first = ok(f"{count} messages ({octets} octets)")
        self._write(listing(first, self.maildrop.scan_listing()))

    def _uidl(self, args):
        if args:
            n = parse_message_number(args[0])
            self._write([ok(f"{n} {self.maildrop.uidl(self.maildrop.get(n))}")])
            return
        self._write(listing(ok(), self.maildrop.uid_listing()))

    def _dele(self, args):
        if not args:
            raise Pop3Error("Message number required.", bad=True)
        n = parse_message_number(args[0])
        self.maildrop.delete(n)
        self._write([ok("Marked to be deleted.")])

    def _rset(self, args):
        self.maildrop.reset()
        count, octets = self.maildrop.stat()
        self._write([ok(f"{count} messages ({octets} octets).")])

    def _noop(self, args):
        self._write([ok()])

    def _retr(self, args):
        if not args:
            raise Pop3Error("Message number required.", bad=True)
        number = parse_message_number(args[0])
        entry = self.maildrop.get(number)
        result = self._send_message(entry, None, ok(f"{entry.octets} octets"))
        if result is None and number - 1 == self.last_retr:
            self._read_ahead(number + 1)
        self.last_retr = number
        return result

    def _read_ahead(self, number: int) -> None:
        """A client downloading its mail asks for the messages in order and waits for each
        before asking for the next. Once it has asked for two in a row, the next message is
        read and encoded while the client takes in this one, so that its RETR is answered at
        once (a quarter of the server's time per message here). Not when the next command is
        already waiting; a message the client then skips has cost one small read."""
        self.ahead = None
        if self.splitter.pending or number > len(self.maildrop.entries):
            return
        entry = self.maildrop.entries[number - 1]
        msg = self.folder.by_uid(entry.uid)
        if msg is None or msg.size > SMALL_MESSAGE:
            return
        try:
            data = self._read_small(msg)
        except OSError:
            return  # the RETR, if it comes, says what is wrong
        self.ahead = (entry.uid, encode_message(data))

    def _top(self, args):
        if len(args) != 2:
            raise Pop3Error("TOP needs a message number and a line count.", bad=True)
        entry = self.maildrop.get(parse_message_number(args[0]))
        return self._send_message(entry, parse_line_count(args[1]), ok())

    def _send_message(self, entry: Entry, body_lines: int | None, first: bytes):
        msg = self.folder.by_uid(entry.uid)
        if msg is None:
            raise Pop3Error("Message was removed by another session.")
        if msg.size <= SMALL_MESSAGE:
            ahead, self.ahead = self.ahead, None
            if ahead is not None and ahead[0] == msg.uid and body_lines is None:
                self._write([first, ahead[1]])
                self._mark_seen(msg)
                return None
            try:
                data = self._read_small(msg)
            except FileNotFoundError:
                raise Pop3Error("Message was removed by another session.") from None
            except OSError:
                log.failure("pop3 #{sid} reading message {uid}", sid=self.session_id, uid=msg.uid)
                raise Pop3Error("Cannot read the message.", SYS_TEMP) from None
            self._write([first, encode_message(data, body_lines)])
            if body_lines is None:
                self._mark_seen(msg)
            return None
        try:
            f = self._open(msg)
        except FileNotFoundError:
            raise Pop3Error("Message was removed by another session.") from None
        except OSError:
            log.failure("pop3 #{sid} opening message {uid}", sid=self.session_id, uid=msg.uid)
            raise Pop3Error("Cannot read the message.", SYS_TEMP) from None
        self._write([first])
        self.streamer = BodyStreamer(
            self.transport, f, WireEncoder(body_lines), on_progress=self.resetTimeout
        )
        d = self.streamer.start()

        def sent(_):
            self.streamer = None
            if body_lines is None:
                self._mark_seen(msg)

        d.addCallback(sent)
        return d

    def _open(self, msg):
        # Unbuffered: we read whole files or 64 KiB pieces, a buffer would only copy.
        return self.folder.open(msg, buffering=0)

    def _read_small(self, msg) -> bytes:
        return self.folder.read(msg)

    def _mark_seen(self, msg) -> None:
        # The issue asks RETR to mark Seen for IMAP (as Dovecot does unless
        # pop3_no_flag_updates); TOP only peeks.
        if "\\Seen" in msg.flags or self.folder.by_uid(msg.uid) is not msg:
            return
        try:
            self.folder.store_flags([msg], {"\\Seen"}, "add", source=self)
        except OSError:
            log.failure("pop3 #{sid} marking {uid} seen", sid=self.session_id, uid=msg.uid)

    def _quit(self, args):
        if self.state == AUTHORIZATION:
            self._write([ok("Logging out.")])
            self._close()
            return
        # RFC 1939 §6: QUIT from TRANSACTION enters UPDATE and removes the marked messages.
        self.state = UPDATE
        uids = self.maildrop.deleted_uids()
        reply = ok("Logging out.")
        if uids:
            msgs = [m for m in (self.folder.by_uid(u) for u in uids) if m is not None]
            try:
                self.mailbox.expunge(self.folder, msgs, source=self)
                reply = ok(f"Logging out, {len(msgs)} messages deleted.")
            except OSError:
                log.failure("pop3 #{sid} expunge at QUIT", sid=self.session_id)
                reply = err("Some deleted messages not removed.", SYS_TEMP)
        self.registry.release(self.address, self)
        self._write([reply])
        self._close()


_AUTH = (AUTHORIZATION,)
_TRANS = (TRANSACTION,)
_COMMANDS = {
    "CAPA": (Pop3Session._capa, (AUTHORIZATION, TRANSACTION)),
    "STLS": (Pop3Session._stls, _AUTH),
    "UTF8": (Pop3Session._utf8, _AUTH),
    "USER": (Pop3Session._user, _AUTH),
    "PASS": (Pop3Session._pass, _AUTH),
    "AUTH": (Pop3Session._auth, _AUTH),
    "QUIT": (Pop3Session._quit, (AUTHORIZATION, TRANSACTION)),
    "STAT": (Pop3Session._stat, _TRANS),
    "LIST": (Pop3Session._list, _TRANS),
    "UIDL": (Pop3Session._uidl, _TRANS),
    "RETR": (Pop3Session._retr, _TRANS),
    "TOP": (Pop3Session._top, _TRANS),
    "DELE": (Pop3Session._dele, _TRANS),
    "RSET": (Pop3Session._rset, _TRANS),
    "NOOP": (Pop3Session._noop, _TRANS),
}


def build_factory(services, kind: str) -> SessionFactory:
    """The factory for listener `kind`: "pop3" (110, STLS) or "pop3s" (995; app.py wraps TLS)."""
    if kind not in ("pop3", "pop3s"):
        raise ValueError(f"pop3 cannot serve listener kind {kind!r}")
    try:
        check_uidl_format(services.config.pop3.uidl_format)
    except ValueError as e:
        raise ConfigError("pop3.uidl_format", str(e)) from None
    expire = services.config.pop3.expire
    # RFC 2449 §6.7: EXPIRE is "NEVER" or a number of days (we only advertise the policy).
    if expire and not (expire == "NEVER" or expire.isdigit()):
        raise ConfigError("pop3.expire", 'must be "", "NEVER" or a number of days')
    return SessionFactory(Pop3Session, services, kind)
