"""What the POP3 and ManageSieve sessions share as line-protocol state machines: taking turns
at the reactor (`TurnTaking`) and the connection's life around the commands (`LineSession`):
refused, evicted, past the login deadline, idle, gone.  Each protocol says how its goodbye
looks on the wire; the events, their log lines and their order are the same.
"""

from __future__ import annotations

from twisted.logger import Logger

from mailsuite.limits import COMMANDS_PER_TURN, PER_ADDRESS


class TurnTaking:
    """Mixed into a line-protocol session: `pump` runs what its reader holds, at most
    COMMANDS_PER_TURN units a call, while nothing else holds it (`busy`, `output_blocked`,
    `closing`, `lost`), then tells its connection (`conn.processed()`).  The session says where
    input comes from and how one unit is run."""

    pumping = False
    yielded = False  # pump stopped at COMMANDS_PER_TURN with input left

    def next_input(self):
        """The next complete unit of input, or None."""
        raise NotImplementedError

    def run_input(self, unit) -> None:
        raise NotImplementedError

    def pump(self) -> None:
        if self.pumping:
            return  # a Deferred that fired at once: the loop below goes on by itself
        self.pumping = True
        self.yielded = False
        steps = 0
        try:
            while not (self.busy or self.output_blocked or self.closing or self.lost):
                if steps >= COMMANDS_PER_TURN:
                    self.yielded = True
                    break
                unit = self.next_input()
                if unit is None:
                    break
                steps += 1
                self.run_input(unit)
        finally:
            self.pumping = False
        self.conn.processed()


class LineSession(TurnTaking):
    """The connection events of a POP3 or ManageSieve session.  A subclass sets `name` (its
    log lines' prefix), `login_state` (the state before a login) and `disconnected` (the
    connection of a session whose connection is gone), makes `log` (its Logger, set on the
    instance: a Logger on a class binds to each instance and would keep it alive through the
    events it logs), `reader`, `conn`, `settings` (its config table: login_deadline,
    idle_timeout) and says `goodbye`."""

    name = ""
    log: Logger
    login_state = ""

    session_id = 0
    client_ip = ""
    sasl = None
    busy = False
    output_blocked = False  # the connection asked us to stop producing replies
    closing = False
    lost = False

    def goodbye(self, text: str, temporary: bool = False) -> bytes:
        """The last reply before closing; `temporary`: the client may try again later."""
        raise NotImplementedError

    def awaiting_login(self) -> bool:
        return self.state == self.login_state

    def connected(self, client_ip: str) -> None:
        self.client_ip = client_ip

    def refuse_connection(self, limit: str) -> None:
        """A connection limit is reached (`limit`: mailsuite.limits.PER_ADDRESS or
        SERVER_WIDE): say which instead of greeting, as a condition to retry later."""
        if limit == PER_ADDRESS:
            self.log.info(
                "{p} refusing {ip}: too many connections from it", p=self.name, ip=self.client_ip
            )
            text = "Too many connections from your address."
        else:
            self.log.info(
                "{p} refusing {ip}: too many connections to the server",
                p=self.name,
                ip=self.client_ip,
            )
            text = "Too many connections to this server, try again later."
        self.conn.write([self.goodbye(text, temporary=True)])
        self._close()

    def evicted(self) -> None:
        """Every slot is taken and this session was the quietest one not logged in."""
        self.conn.write([self.goodbye("Server busy, closing idle connection.", temporary=True)])
        self._close()

    def deadline_passed(self) -> None:
        """The login deadline passed before a login."""
        self.log.info("{p} #{sid} login deadline passed", p=self.name, sid=self.session_id)
        self.conn.write([self.goodbye("No login in time, closing connection.")])
        self._close()

    def timed_out(self) -> None:
        # RFC 1939 §3: POP3's autologout closes without entering UPDATE; likewise here nothing
        # a session holds is committed by an idle timeout.
        self.log.info("{p} #{sid} idle timeout", p=self.name, sid=self.session_id)
        self.conn.write([self.goodbye("Disconnected for inactivity.")])
        self._close()

    def feed(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.closing:
            return
        self.reader.feed(data)
        self.pump()

    def connection_lost(self) -> None:
        self.lost = True
        if self.sasl is not None:
            self.sasl.abort()
        self.sasl = None
        self.log.info("{p} #{sid} disconnected", p=self.name, sid=self.session_id)
        self._let_go()

    def _let_go(self) -> None:
        """Drop the buffers and what the session holds of its connection, so that nothing of it
        waits for the cycle collector (a subclass lets go of its own things, then calls this)."""
        self.reader.discard()
        self.conn = self.disconnected

    def _close(self) -> None:
        self.closing = True
        self.conn.close()
