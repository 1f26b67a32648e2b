"""POP3 TRANSACTION and UPDATE states (RFC 1939 §5, §6): STAT, LIST, UIDL, RETR, TOP, DELE,
RSET, NOOP and QUIT.

A mixin of `Pop3Session`: it uses the session's maildrop, folder and `_write`; bodies too big
to send from memory are streamed by the connection (`conn.stream`).
"""

from __future__ import annotations

from twisted.logger import Logger

from mailsuite.pop3.authorization import AUTHORIZATION, UPDATE
from mailsuite.pop3.maildrop import Entry
from mailsuite.pop3.parser import (
    SYS_TEMP,
    Pop3Error,
    WireEncoder,
    encode_message,
    err,
    listing,
    ok,
    parse_line_count,
    parse_message_number,
)

log = Logger(namespace="mailsuite.pop3")

# Messages up to this size are read in one go on the reactor (a page-cache read of a small file
# is cheaper than a thread hop); bigger ones are streamed in chunks read in the thread pool.
SMALL_MESSAGE = 128 * 1024


class TransactionCommands:
    """The TRANSACTION-state commands (and QUIT, which enters UPDATE), for `Pop3Session`."""

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
        if self.reader.pending or number > len(self.maildrop.entries):
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
        d = self.conn.stream(f, WireEncoder(body_lines))

        def sent(_):
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
        # RETR marks the message Seen for IMAP, as Dovecot does (unless
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
        # RFC 1939 §6: +OK once the UPDATE state's removals are done: the unlinks (and RETR's
        # \Seen renames) run in the folder's durable-pool queue, and the answer waits for them.
        done = self.folder.when_written()
        if done is None:
            self._finish_quit(reply)
            return None
        return done.addCallback(lambda _: self._finish_quit(reply))

    def _finish_quit(self, reply: bytes) -> None:
        self.server_state.release(self.address, self)
        self._write([reply])
        self._close()
