"""The failed-login throttle against real clients on real sockets: concurrent guesses count as
many attempts as they are, a guesser at one address never locks the account for its owner
elsewhere, and an attack spread over many addresses locks the account except for the networks
it has logged in from before.

Clients come from distinct loopback addresses (Linux routes all of 127/8 to lo) so that the
server sees different client addresses and networks."""

from __future__ import annotations

import base64
import socket
import threading

import pytest

from mailsuite.accounts.throttle import FailedLoginThrottle, client_address, client_network
from tests.conftest import DEFAULT_PASSWORD

USER = "alice@example.test"
IMAP_AND_SUBMISSION = {"listen": {"imap": ["127.0.0.1:0"], "submission": ["127.0.0.1:0"]}}


class ImapClient:
    """One IMAP connection from a chosen source address."""

    def __init__(self, port: int, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(source, 0)
        )
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"* OK")

    def send_login(self, user: str, password: str) -> None:
        self.sock.sendall(f'a LOGIN "{user}" "{password}"\r\n'.encode())

    def tagged(self) -> bytes:
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            if line.startswith(b"a "):
                return line.rstrip(b"\r\n")

    def login(self, user: str, password: str) -> bytes:
        self.send_login(user, password)
        return self.tagged()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def server(server_factory):
    srv = server_factory(
        **IMAP_AND_SUBMISSION,
        auth={"plaintext": "loopback"},
        limits={"connections_per_ip": 200, "connections_total": 400},
    )
    srv.add_user(USER)
    return srv


def test_sixty_concurrent_guesses_are_verified_no_more_than_the_throttle_allows(server):
    allowed = server.config.auth.free_failures
    clients = [ImapClient(server.port("imap")) for _ in range(60)]
    before = server.services.accounts.verifications
    # Every LOGIN is on the wire before the first answer can come back.
    for c in clients:
        c.send_login(USER, "wrong-guess")
    replies = [c.tagged() for c in clients]
    verified = server.services.accounts.verifications - before
    assert verified <= allowed, verified
    assert sum(r.startswith(b"a NO [AUTHENTICATIONFAILED]") for r in replies) == verified
    assert sum(r.startswith(b"a NO [UNAVAILABLE]") for r in replies) == 60 - verified
    # The right password after them, from the same client: still throttled.
    assert clients[0].login(USER, DEFAULT_PASSWORD).startswith(b"a NO [UNAVAILABLE]")
    for c in clients:
        c.close()


class SmtpClient:
    """One submission connection, past EHLO, ready for AUTH."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"220")
        self.sock.sendall(b"EHLO client.example\r\n")
        while not self.file.readline().startswith(b"250 "):
            pass

    def send_auth(self, user: str, password: str) -> None:
        plain = base64.b64encode(f"\0{user}\0{password}".encode())
        self.sock.sendall(b"AUTH PLAIN " + plain + b"\r\n")

    def reply(self) -> bytes:
        return self.file.readline().rstrip(b"\r\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_sixty_concurrent_smtp_auth_guesses_likewise(server):
    allowed = server.config.auth.free_failures
    clients = [SmtpClient(server.port("submission")) for _ in range(60)]
    before = server.services.accounts.verifications
    for c in clients:
        c.send_auth(USER, "wrong-guess")
    replies = [c.reply() for c in clients]
    verified = server.services.accounts.verifications - before
    assert verified <= allowed, verified
    assert sum(r.startswith(b"535") for r in replies) == verified
    assert sum(r.startswith(b"454 4.7.0") for r in replies) == 60 - verified
    clients[0].send_auth(USER, DEFAULT_PASSWORD)
    assert clients[0].reply().startswith(b"454 4.7.0")
    for c in clients:
        c.close()


def test_concurrent_logins_with_the_right_password_all_get_in(server):
    # A mail client opening several connections at once must not throttle itself.
    clients = [ImapClient(server.port("imap")) for _ in range(8)]
    for c in clients:
        c.send_login(USER, DEFAULT_PASSWORD)
    assert all(c.tagged().startswith(b"a OK") for c in clients)
    for c in clients:
        c.close()


def test_failures_from_one_address_do_not_lock_the_account_elsewhere(server):
    guesser = ImapClient(server.port("imap"), source="127.0.0.1")
    for _ in range(4):
        assert guesser.login(USER, "wrong").startswith(b"a NO [")
    # The guesser is slowed down ...
    assert guesser.login(USER, DEFAULT_PASSWORD).startswith(b"a NO [UNAVAILABLE]")
    # ... the owner at another address is not.
    owner = ImapClient(server.port("imap"), source="127.0.1.1")
    assert owner.login(USER, DEFAULT_PASSWORD).startswith(b"a OK")
    guesser.close()
    owner.close()


def test_spread_attack_locks_the_account_except_for_known_good_clients(server):
    port = server.port("imap")
    owner = ImapClient(port, source="127.0.9.1")
    assert owner.login(USER, DEFAULT_PASSWORD).startswith(b"a OK")
    owner.close()
    lockout = server.config.auth.lockout_failures
    for i in range(lockout):
        c = ImapClient(port, source=f"127.0.{20 + i}.1")
        assert c.login(USER, "wrong").startswith(b"a NO [")
        c.close()
    # A stranger from yet another network meets the account-wide lock, right password or not.
    stranger = ImapClient(port, source="127.0.99.1")
    assert stranger.login(USER, DEFAULT_PASSWORD).startswith(b"a NO [UNAVAILABLE]")
    stranger.close()
    # The owner's network (another address in it, too) has logged in before: not locked out.
    owner = ImapClient(port, source="127.0.9.2")
    assert owner.login(USER, DEFAULT_PASSWORD).startswith(b"a OK")
    owner.close()


def test_a_known_good_client_is_spared_its_address_being_locked_by_a_neighbour(server):
    port = server.port("imap")
    owner = ImapClient(port, source="127.0.5.5")
    assert owner.login(USER, DEFAULT_PASSWORD).startswith(b"a OK")
    owner.close()
    # A neighbour behind the same address guesses many accounts: the address is locked ...
    ip_lockout = server.config.auth.ip_lockout_failures
    # (a connection of its own for each guess: a session is closed after limits.bad_commands
    # refused logins, so a guesser comes back on new ones)
    for i in range(ip_lockout):
        neighbour = ImapClient(port, source="127.0.5.5")
        neighbour.login(f"user{i}@example.test", "wrong")
        neighbour.close()
    neighbour = ImapClient(port, source="127.0.5.5")
    assert neighbour.login("bob@example.test", "wrong").startswith(b"a NO [UNAVAILABLE]")
    neighbour.close()
    # ... for everyone but the accounts that have logged in from there before.
    owner = ImapClient(port, source="127.0.5.5")
    assert owner.login(USER, DEFAULT_PASSWORD).startswith(b"a OK")
    owner.close()


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_attempts_in_flight_count_and_a_right_password_takes_its_attempt_back():
    t = FailedLoginThrottle(free_failures=2, base_delay=10, ip_free_failures=2, clock=FakeClock())
    assert t.begin("192.0.2.1", "a@example.test") == 0
    assert t.begin("192.0.2.1", "a@example.test") == 0
    # Two attempts in flight use up the free failures: the third must wait.
    assert t.begin("192.0.2.1", "a@example.test") > 0
    t.finish("192.0.2.1", "a@example.test", ok=True)
    t.finish("192.0.2.1", "a@example.test", ok=True)
    assert t.retry_after("192.0.2.1", "b@example.test") == 0
    assert t.retry_after("192.0.2.1", "a@example.test") == 0


def test_known_good_table_is_bounded():
    t = FailedLoginThrottle(known_good_entries=2)
    for i in range(3):
        t.succeeded(f"192.0.{i}.1", "a@example.test")
    assert not t.known_good("192.0.0.1", "a@example.test")
    assert t.known_good("192.0.1.9", "A@example.test") and t.known_good(
        "192.0.2.1", "a@example.test"
    )


def test_networks_and_addresses():
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert client_address("192.0.2.77") == "192.0.2.77"
    assert client_address("2001:db8:1:2:3::4") == "2001:db8:1:2::/64"
    assert client_network("not an address") == "not an address"


def test_concurrent_guesses_through_threads_of_the_same_client(server):
    # The same over SMTP AUTH would go through the same Authenticator; here many threads with
    # their own connections race, as a botnet's workers behind one NAT would.
    port = server.port("imap")
    before = server.services.accounts.verifications
    barrier = threading.Barrier(20)
    results: list[bytes] = []

    def guess():
        c = ImapClient(port, source="127.0.7.7")
        barrier.wait()
        results.append(c.login(USER, "wrong"))
        c.close()

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 20
    assert server.services.accounts.verifications - before <= server.config.auth.free_failures
