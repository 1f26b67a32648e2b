"""The IMAP protocol state machine: bytes in, replies out, no socket.

A `Session` takes what the client sent (`receive`), frames it into commands with the pure
`CommandReader`, runs them one at a time through the command table, enforces the state each
command needs (RFC 3501 §3), and writes every reply through its `Connection`: whatever carries
the bytes (the Twisted adapter in `server.py`, or a list in a test).  Folder events reach it
through its `SelectedView`.  The next pipelined command is taken only when the previous one has
written its tagged reply, so STARTTLS and COMPRESS change the stream between two commands.
"""

from __future__ import annotations

import time
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailsuite.imap import response as R
from mailsuite.imap.commands.table import COMMANDS, CommandSpec, capabilities
from mailsuite.imap.literal_spool import LiteralSpooler
from mailsuite.imap.parser import (
    Command,
    CommandReader,
    ImapBad,
    ImapBye,
    ImapError,
    ImapNo,
    LoginFailed,
    NeedContinuation,
    RejectedCommand,
)
from mailsuite.imap.server_state import ImapState
from mailsuite.imap.states import AUTHENTICATED, LOGOUT, NOT_AUTHENTICATED, SELECTED
from mailsuite.imap.view import SelectedView
from mailsuite.limits import COMMANDS_PER_TURN
from mailsuite.logtext import visible

log = Logger(namespace="mailsuite.imap")

# Untagged output is gathered and written in pieces of about this size (whole responses, few
# writes; a big FETCH does not sit in memory whole).
FLUSH_BYTES = 65536


# " OK <NAME> completed" + CRLF by command name (only names of the command table get here).
_COMPLETED: dict[str, bytes] = {}


class Connection(Protocol):
    """What a session needs from whatever carries its bytes."""

    closed: bool
    # write_sequence also takes `mailsuite.imap.literal.MessageLiteral`s and streams them
    # (FETCH then answers big bodies with them instead of their bytes).
    streams_literals: bool

    def is_secure(self) -> bool: ...

    def write_sequence(self, chunks: list[bytes]) -> None: ...

    def wait_writable(self) -> defer.Deferred: ...

    def writable(self) -> bool:
        """`wait_writable()` would fire at once (asked before every command, so it costs no
        Deferred)."""

    def close(self) -> None: ...

    def start_tls(self) -> None: ...

    def start_compression(self) -> None: ...

    def quick_ack(self) -> None: ...

    def processed(self) -> None:
        """The session has run what it could for now (`Session.yielded`, `Session.held`):
        time for flow control."""


class _Disconnected:
    """The `Connection` of a session whose connection is gone: holds nothing, so that the
    session, its view and its buffers are freed at once rather than by the cycle collector."""

    closed = True
    streams_literals = False

    def is_secure(self) -> bool:
        return False

    def write_sequence(self, chunks: list[bytes]) -> None:
        pass

    def wait_writable(self) -> defer.Deferred:
        return defer.succeed(None)

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def start_tls(self) -> None:
        pass

    def start_compression(self) -> None:
        pass

    def quick_ack(self) -> None:
        pass

    def processed(self) -> None:
        pass


DISCONNECTED = _Disconnected()


class Session:
    """Per-connection state and the one place where results become tagged replies."""

    def __init__(
        self,
        services,
        imap_state: ImapState,
        protocol: Connection,
        kind: str,
        client_ip: str,
    ):
        self.services = services
        self.config = services.config
        self.imap_state = imap_state
        self.protocol = protocol
        self.kind = kind
        self.client_ip = client_ip
        cfg = services.config.imap
        self.reader = CommandReader(cfg.max_command_line, cfg.max_literal, cfg.append_limit)
        # A stranger gets no more than a few KB per literal (LOGIN needs no more).
        self.reader.literal_cap = cfg.max_literal_before_auth
        # Large APPEND literals the reader queues are written in the durable pool; reading
        # from the client waits while too much of them is unwritten (Connection.processed).
        self.spooler = LiteralSpooler(services.store.io, self._spool_drained)
        self.state = NOT_AUTHENTICATED
        self.user: str | None = None
        self.mailbox = None
        self.view: SelectedView | None = None
        self.enabled: set[str] = set()
        self.saved_uids: list[int] = []
        self.client_id: list | None = None  # what the client said in ID (RFC 2971)
        self.line_handler = None  # sub-dialogue (AUTHENTICATE, IDLE) takes raw lines
        self.idling = None  # the IDLE command's state while idling
        self.notifier = None  # the NOTIFY SET in force (commands/notifier.py), RFC 5465
        self.sasl = None  # the AUTHENTICATE dialogue while it runs (aborted if the client goes)
        self.compressed = False
        self.bad_commands = 0
        self.command_started = 0.0  # time.monotonic() when the running command began
        self.busy = False  # a command's Deferred has not fired yet
        self.current: Command | None = None  # the command running (or the last one)
        self._out: list[bytes] = []
        self._out_size = 0
        self.yielded = False  # pump stopped at COMMANDS_PER_TURN with input left
        self._pumping = False  # a pump is running: a command ending inside it goes on there
        self._awaiting_output = False  # pump waits for the client to read what we sent

    # -- properties ---------------------------------------------------------------------------
    @property
    def secure(self) -> bool:
        return self.protocol.is_secure()

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled

    def enable_condstore(self) -> None:
        """A CONDSTORE-enabling command ran (RFC 7162 §3.1): the first one while a mailbox is
        selected reports its HIGHESTMODSEQ before the command's other responses."""
        if "CONDSTORE" in self.enabled:
            return
        self.enabled.add("CONDSTORE")
        if self.view is not None:
            self.send(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % self.view.folder.highestmodseq)

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def utf8(self) -> bool:
        # RFC 9051 §5.1: IMAP4rev2 mailbox names and strings are UTF-8
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        """ENABLE IMAP4rev2 was given: RFC 9051's behaviour (appendix E) from now on."""
        return "IMAP4REV2" in self.enabled

    def plaintext_allowed(self) -> bool:
        """Password logins in the clear: only over TLS unless policy allows loopback."""
        return self.services.plaintext_auth_allowed(self.secure, self.client_ip)

    def capabilities(self) -> list[str]:
        return capabilities(self)

    # -- events in ----------------------------------------------------------------------------
    def greet(self) -> None:
        """The connection is up: RFC 3501 §7.1.1 greeting with the capabilities."""
        caps = " ".join(self.capabilities())
        self.send(R.untagged(f"OK [CAPABILITY {caps}] mailsuite IMAP4rev1 ready"))
        self.flush()

    def receive(self, data: bytes) -> None:
        """Bytes from the client (already inflated when COMPRESS is active)."""
        self.reader.feed(data)
        if self.reader.in_command:
            self.protocol.quick_ack()
        self.pump()

    @property
    def held(self) -> bool:
        """Commands wait for something other than more input: a running command, the client
        reading our output, or the next reactor turn."""
        return self.busy or self.yielded or self._awaiting_output

    def pump(self) -> None:
        """Run what the reader holds, one command at a time, at most COMMANDS_PER_TURN of
        them; then `yielded` tells the connection to call again on a later turn."""
        if self._pumping:
            # A command finished from inside the running pump (DONE ends IDLE, a SASL
            # response ends AUTHENTICATE): that pump's loop goes on with what follows, in
            # the same turn's count. A fresh pump here would start the count again, one call
            # deeper for every such command pipelined.
            return
        self.yielded = False
        self._pumping = True
        try:
            self._pump()
        finally:
            self._pumping = False
        self.protocol.processed()

    def _pump(self) -> None:
        steps = 0
        while not self.protocol.closed:
            if steps >= COMMANDS_PER_TURN:
                self.yielded = True
                return
            steps += 1
            if self.line_handler is not None:
                if not self._feed_line_handler():
                    return
                continue
            if self.busy or self._output_blocked():
                return
            ev = self.reader.next_event()
            if self.reader.spools_begun or self.spooler.spools:
                self.spooler.track(self.reader.take_spools())
                self.spooler.write()
                if type(ev) is Command:
                    self._run_spooled(ev)
                    continue
                if isinstance(ev, RejectedCommand):
                    self.spooler.drop()
            if ev is None:
                return
            if type(ev) is Command:  # what nearly every event is, asked first
                self._run_step(ev)
            elif isinstance(ev, NeedContinuation):
                self.protocol.write_sequence([R.continuation("Ready for literal data")])
                self.protocol.quick_ack()
            elif isinstance(ev, RejectedCommand):
                if ev.close:
                    log.info(
                        "imap {ip}: {text}, closing", ip=self.client_ip, text=visible(ev.error.text)
                    )
                    self.send(R.tagged(ev.tag, ev.error.status, ev.error.text, ev.error.code))
                    self.send(R.untagged("BYE " + ev.error.text))
                    self.flush()
                    self.protocol.close()
                    return
                self.reject(ev.tag, ev.error)

    def _output_blocked(self) -> bool:
        """The transport holds more unsent output than it wants: run nothing more until the
        client has read it, so a client that never reads cannot make us hold its replies."""
        if self._awaiting_output:
            return True
        if self.protocol.writable():
            return False
        d = self.protocol.wait_writable()
        if d.called:
            return False
        self._awaiting_output = True

        def writable(_):
            self._awaiting_output = False
            if not self.protocol.closed:
                self.pump()

        d.addCallback(writable)
        return True

    def _feed_line_handler(self) -> bool:
        """A sub-dialogue (AUTHENTICATE response, IDLE's DONE) takes raw lines while its
        command is still running.  False when no whole line is there yet."""
        line = self.reader.next_line()
        if line is None:
            if self.reader.buffered() > self.config.imap.max_command_line:
                self.protocol.write_sequence([R.untagged("BYE Line too long")])
                self.protocol.close()
            return False
        try:
            self.line_handler(line)
        except Exception:
            log.failure("IMAP line handler crashed")
            self.protocol.close()
        return True

    def _run_spooled(self, cmd: Command) -> None:
        """A command with spooled literals runs once their last chunk is on disk."""
        ready = self.spooler.ready()
        if ready is None:
            self._run_claimed(cmd)
            return
        self.busy = True

        def written(_):
            self.busy = False
            if not self.protocol.closed:
                self._run_claimed(cmd)
                if not self.busy and not self.protocol.closed:
                    self.pump()

        ready.addCallback(written)

    def _run_claimed(self, cmd: Command) -> None:
        literals, error = self.spooler.claim()
        if error is not None:
            # The message never reached the disk whole (a full disk, an I/O error): the
            # command is not run, and nothing of it is kept.
            self.current = cmd
            self._finish_error(cmd, ImapNo("SERVERBUG", "The message could not be stored"))
            return
        d = self._run_step(cmd)
        if d is None or d.called:
            self.spooler.close(literals)
        else:
            d.addBoth(lambda result: self.spooler.close(literals))

    def _spool_drained(self) -> None:
        """Spooled literals' writes caught up: reading from the client may go on."""
        self.protocol.processed()

    def _run_step(self, cmd: Command) -> defer.Deferred | None:
        try:
            d = self.run(cmd)
        except Exception:
            log.failure("IMAP handler crashed")
            self.protocol.write_sequence([R.untagged("BYE Internal error")])
            self.protocol.close()
            return None
        if d is not None and not d.called:
            self.busy = True

            def done(result):
                self.busy = False
                if not self.protocol.closed:
                    self.pump()
                return None

            def crashed(failure):
                log.failure("IMAP command crashed", failure=failure)
                self.busy = False
                self.protocol.close()

            d.addCallbacks(done, crashed)
        return d

    def folder_changed(self) -> None:
        """A folder event arrived; IDLE delivers it at once (RFC 2177), and so does NOTIFY
        between commands (RFC 5465 §5)."""
        if self.idling is not None:
            self.idling.wake()
        elif self.notifier is not None:
            self.notifier.wake()

    def close(self) -> None:
        """The connection is gone (or LOGOUT): let go of the folder, IDLE's poll and an
        unfinished AUTHENTICATE (its throttle slot is given back as a failure at once)."""
        self.deselect()
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None
        if self.sasl is not None:
            self.sasl.abort()
            self.sasl = None
        if self.idling is not None:
            self.idling.stop()
            self.idling = None

    def connection_lost(self) -> None:
        """The connection is gone: close, and drop every reference back to it and every
        buffer, so that nothing of this session waits for the cycle collector."""
        self.close()
        self.line_handler = None
        self.reader.clear()
        self.spooler.abort()  # a literal half-way, or written for a command not run yet
        self._out, self._out_size = [], 0
        self.protocol = DISCONNECTED

    # -- output -------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_BYTES:
            self.flush()

    def send_many(self, lines: list[bytes]) -> None:
        for line in lines:
            self.send(line)

    def send_batch(self, pieces: list) -> None:
        """Queue a batch of responses already built (FETCH's) to leave in one write with
        what follows them: the next batch's wait for the transport flushes them, and the last
        batch goes with the tagged reply (one system call for a 1 MB body and its OK)."""
        self._out.extend(pieces)
        self._out_size += sum(map(len, pieces))

    def flush(self) -> None:
        if self._out:
            out, self._out, self._out_size = self._out, [], 0
            self.protocol.write_sequence(out)

    def drain(self) -> defer.Deferred:
        """Fires once the transport wants more data (back-pressure for big responses)."""
        self.flush()
        return self.protocol.wait_writable()

    def send_updates(self, expunge_ok: bool = True) -> None:
        view = self.view
        if view is not None and view.has_updates(expunge_ok):
            self.send_many(view.drain_updates(expunge_ok))
        if self.notifier is not None:
            self.send_many(self.notifier.drain())

    # -- state changes ------------------------------------------------------------------------
    def select(self, folder, readonly: bool) -> SelectedView:
        self.deselect()
        self.view = SelectedView(self, folder, readonly)
        self.state = SELECTED
        self.saved_uids = []
        return self.view

    def deselect(self) -> None:
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.state == SELECTED:
            self.state = AUTHENTICATED
        self.saved_uids = []

    def logged_in(self, address: str) -> None:
        self.user = address
        self.mailbox = self.services.store.mailbox(address)
        self.state = AUTHENTICATED
        self.reader.literal_cap = None

    # -- running commands ---------------------------------------------------------------------
    def run(self, cmd: Command) -> defer.Deferred | None:
        """Run one command; returns a Deferred when it completes later, else None."""
        spec = COMMANDS.get(cmd.name)
        self.current = cmd
        self.command_started = time.monotonic()
        try:
            if spec is None:
                raise ImapBad("Unknown command " + cmd.name[:40])
            if self.state not in spec.states:
                raise ImapBad(f"{cmd.name} not allowed in the {self.state} state")
            result = spec.handler(self, cmd)
        except Exception as e:
            self._finish_error(cmd, e)
            return None
        # (Deferred's metaclass is an ABC's: its isinstance is slow, and most results are
        # None or text.)
        if result is not None and type(result) is not str and isinstance(result, defer.Deferred):
            d = result
            d.addCallback(lambda r: self._finish_ok(cmd, spec, r))
            d.addErrback(lambda f: self._finish_error(cmd, f.value))
            return d
        self._finish_ok(cmd, spec, result)
        return None

    def _finish_ok(self, cmd: Command, spec: CommandSpec, result) -> None:
        if self.state == LOGOUT or result is R.ALREADY_ANSWERED:
            self.flush()
            return
        self.send_updates(spec.expunge_ok)
        if result is None:
            # `tag OK <NAME> completed`, its tail made once per command name.
            tail = _COMPLETED.get(cmd.name)
            if tail is None:
                tail = _COMPLETED[cmd.name] = R.tagged("", "OK", f"{cmd.name} completed")
            self.send(cmd.tag.encode("ascii") + tail)
        else:
            code = None
            text = f"{cmd.name} completed"
            if isinstance(result, tuple):
                code, text = result
            elif isinstance(result, str):
                text = result
            self.send(R.tagged(cmd.tag, "OK", text, code))
        self.flush()
        self.services.metrics.imap_command(spec.name, self.command_started)
        self.bad_commands = 0 if cmd.name != "NOOP" else self.bad_commands

    def _finish_error(self, cmd: Command, error: BaseException) -> None:
        if isinstance(error, ImapBye):
            self.send(R.untagged(f"BYE {error.text}"))
            self.flush()
            self.protocol.close()
            return
        if not isinstance(error, ImapError):
            log.failure(
                "IMAP command {name} failed",
                failure=Failure(error, type(error), error.__traceback__),
                name=visible(cmd.name),
            )
            error = ImapNo("SERVERBUG", "Internal error, see the server log")
        self.send_updates(expunge_ok=False)
        self.send(R.tagged(cmd.tag, error.status, error.text, error.code))
        self.flush()
        if isinstance(error, ImapBad):
            log.info(
                "imap BAD {name} from {ip}: {text}",
                name=visible(cmd.name),
                ip=self.client_ip,
                text=visible(error.text),
            )
            self.note_bad()
        elif isinstance(error, LoginFailed):
            self.note_bad()

    def reject(self, tag: str, error: ImapError) -> None:
        """A command refused by the reader (syntax, size) before it could run."""
        self.send(R.tagged(tag, error.status, error.text, error.code))
        self.flush()
        if isinstance(error, ImapBad):
            log.info(
                "imap BAD input from {ip}: {text}", ip=self.client_ip, text=visible(error.text)
            )
            self.note_bad()

    def note_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.config.limits.bad_commands:
            self.send(R.untagged("BYE Too many invalid commands"))
            self.flush()
            self.protocol.close()
