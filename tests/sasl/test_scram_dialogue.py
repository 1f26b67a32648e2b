"""SCRAM-SHA-256 through the shared dialogue and the Authenticator: the keys looked up off the
reactor with the attempt counted first, made-up salts for users without keys, the slot given
back on every way out, and keys stored when a password is set (and only then)."""

from __future__ import annotations

import base64
import sqlite3

import pytest
from passlib.hash import sha512_crypt
from twisted.internet import defer, reactor, task

from mailsuite import sasl
from mailsuite.accounts.checker import SCRAM_PROOF_SECONDS, Authenticator, AuthFailed
from mailsuite.accounts.db import Accounts
from mailsuite.accounts.scram_keys import ITERATIONS
from mailsuite.accounts.throttle import FailedLoginThrottle
from tests.conftest import ensure_reactor, on_reactor
from tests.sasl.scram_client import ScramClient

ALICE = "alice@example.test"
PASSWORD = "Sesame-0pen-pw"
IP = "192.0.2.1"


@pytest.fixture
def accounts(tmp_path) -> Accounts:
    ensure_reactor()
    acc = Accounts(tmp_path / "accounts.sqlite", ["example.test"])
    acc.add_user(ALICE, PASSWORD)
    return acc


def make_authn(accounts, clock=None, **limits) -> Authenticator:
    limits = {"free_failures": 2, "base_delay": 60, "lockout_failures": 5, **limits}
    return Authenticator(accounts, FailedLoginThrottle(**limits), clock=clock)


@pytest.fixture
def authn(accounts) -> Authenticator:
    return make_authn(accounts)


def settle(seconds: float) -> None:
    """Let the lookups in the thread pool come back."""
    on_reactor(task.deferLater, reactor, seconds, lambda: None)


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


def wait(outcome):
    """A Pending outcome's next outcome (the lookup runs in a thread, the reactor elsewhere)."""
    assert isinstance(outcome, sasl.Pending)
    result = []
    on_reactor(lambda: outcome.deferred.addCallback(result.append))
    return result[0]


def exchange(authn, username, password, *, ip=IP, tamper=False):
    """(outcome of the whole exchange, the server-first message, the client)."""
    client = ScramClient(username, password)
    d = sasl.SaslDialogue(authn, ip, "imap")
    first = on_reactor(d.start, "SCRAM-SHA-256", b64(client.client_first()))
    out = wait(first)
    if not isinstance(out, sasl.SendChallenge):
        return out, None, client
    server_first = out.data
    out = on_reactor(d.respond, b64(client.client_final(server_first, tamper=tamper)))
    if isinstance(out, sasl.SendChallenge):
        assert client.verify(out.data)
        out = on_reactor(d.respond, b"")
    return out, server_first, client


def result_of(authn, outcome):
    def run():
        return defer.maybeDeferred(sasl.SaslDialogue(authn, IP, "imap").login, outcome.credentials)

    try:
        return on_reactor(run)
    except Exception as e:  # noqa: BLE001 - the test compares the type
        return type(e)


def test_whole_exchange_authenticates_with_the_canonical_address(authn, logs):
    out, server_first, _ = exchange(authn, "Alice@Example.test", PASSWORD)
    assert out == sasl.Ready(sasl.Verdict("Alice@Example.test", ALICE))
    assert result_of(authn, out) == ALICE
    assert f",i={ITERATIONS}".encode() in server_first and ITERATIONS >= 4096
    assert logs.matching("imap login alice@example.test from 192.0.2.1")


def test_empty_challenge_without_initial_response(authn):
    client = ScramClient(ALICE, PASSWORD)
    d = sasl.SaslDialogue(authn, IP, "smtp")
    assert on_reactor(d.start, "scram-sha-256") == sasl.SendChallenge(b"")
    out = wait(on_reactor(d.respond, b64(client.client_first())))
    out = on_reactor(d.respond, b64(client.client_final(out.data)))
    assert client.verify(out.data)
    assert on_reactor(d.respond, b"=") == sasl.Ready(sasl.Verdict(ALICE, ALICE))


def test_wrong_password_fails_and_counts_in_the_throttle(authn, logs):
    for _ in range(2):
        out, _, _ = exchange(authn, ALICE, "wrong")
        assert out == sasl.Ready(sasl.Verdict(ALICE, None))
        assert result_of(authn, out) is AuthFailed
    assert logs.matching("imap login failed for alice@example.test from 192.0.2.1")
    # The free failures are used up: the next attempt is refused before any keys are looked up.
    before = authn.accounts.verifications
    out, server_first, _ = exchange(authn, ALICE, PASSWORD)
    assert server_first is None and out.credentials.throttled > 0
    assert authn.accounts.verifications == before
    assert result_of(authn, out).__name__ == "AuthThrottled"


def test_tampered_proof_fails(authn):
    out, _, _ = exchange(authn, ALICE, PASSWORD, tamper=True)
    assert out == sasl.Ready(sasl.Verdict(ALICE, None))


def test_unknown_user_gets_a_stable_made_up_salt(authn, accounts, tmp_path):
    def salt_of(server_first: bytes) -> bytes:
        return server_first.split(b",s=")[1].split(b",")[0]

    out1, first1, _ = exchange(authn, "ghost@example.test", "x", ip="198.51.100.1")
    out2, first2, _ = exchange(authn, "GHOST@example.test", "y", ip="198.51.100.2")
    assert out1.credentials.address is None and out2.credentials.address is None
    assert salt_of(first1) == salt_of(first2)
    assert first1.endswith(f",i={ITERATIONS}".encode())
    _, other, _ = exchange(authn, "nobody@example.test", "x", ip="198.51.100.3")
    assert salt_of(other) != salt_of(first1)
    # The same after a restart, as a real user's salt is.
    reopened = make_authn(Accounts(tmp_path / "accounts.sqlite"))
    _, again, _ = exchange(reopened, "ghost@example.test", "x", ip="198.51.100.4")
    assert salt_of(again) == salt_of(first1)
    # A real user's server-first has the same shape.
    _, real, _ = exchange(authn, ALICE, PASSWORD, ip="198.51.100.5")
    assert len(salt_of(real)) == len(salt_of(first1))


def test_disabled_user_fails_with_the_right_password(authn, accounts):
    accounts.set_enabled(ALICE, False)
    out, _, _ = exchange(authn, ALICE, PASSWORD)
    assert out.credentials.address is None


def test_p_flag_and_malformed_client_first_are_bad_responses_not_attempts(authn):
    d = sasl.SaslDialogue(authn, IP, "imap")
    out = on_reactor(d.start, "SCRAM-SHA-256", b64(b"p=tls-unique,,n=alice@example.test,r=x"))
    assert out == sasl.BadResponse("channel-binding-not-supported")
    out = on_reactor(sasl.SaslDialogue(authn, IP, "imap").start, "SCRAM-SHA-256", b64(b"junk"))
    assert isinstance(out, sasl.BadResponse)
    assert authn.throttle.retry_after(IP, ALICE) == 0 and not authn._in_flight


def test_authzid_other_than_the_user_is_refused(authn):
    first = b"n,a=bob@example.test,n=alice@example.test,r=abc"
    out = on_reactor(sasl.SaslDialogue(authn, IP, "imap").start, "SCRAM-SHA-256", b64(first))
    assert out == sasl.IdentityRefused()


def test_cancel_abort_and_malformed_final_give_the_slot_back_as_failures(accounts):
    authn = make_authn(accounts, free_failures=10, lockout_failures=20)
    ends = [
        lambda d: on_reactor(d.respond, b"*"),
        lambda d: on_reactor(d.abort),
        lambda d: on_reactor(d.respond, b64(b"garbage")),
        lambda d: on_reactor(d.respond, b"%%%"),
    ]
    for n, end in enumerate(ends):
        ip = f"203.0.{n}.1"
        d = sasl.SaslDialogue(authn, ip, "pop3")
        client = ScramClient(ALICE, PASSWORD)
        out = wait(on_reactor(d.start, "SCRAM-SHA-256", b64(client.client_first())))
        assert isinstance(out, sasl.SendChallenge)
        assert authn._in_flight
        end(d)
        assert not authn._in_flight
        assert authn.throttle._records[("pair", f"203.0.{n}.0/24", ALICE)].failures == 1
    # And the right password still works afterwards.
    assert exchange(authn, ALICE, PASSWORD)[0].credentials.address == ALICE


def test_concurrent_attempts_wait_for_each_other_and_each_counts(authn):
    """Five exchanges started at once: one holds the slot, the others queue; all five are
    counted as they reach the throttle, and the ones past the free failures are refused."""
    clients = [ScramClient(ALICE, "wrong") for _ in range(5)]
    dialogues = [sasl.SaslDialogue(authn, IP, "imap") for _ in clients]
    outcomes: list = [None] * 5

    def start_all():
        for i, (d, c) in enumerate(zip(dialogues, clients, strict=True)):
            pending = d.start("SCRAM-SHA-256", b64(c.client_first()))
            pending.deferred.addCallback(lambda out, i=i: outcomes.__setitem__(i, out))

    on_reactor(start_all)
    settle(0.5)
    challenged = [i for i, o in enumerate(outcomes) if isinstance(o, sasl.SendChallenge)]
    assert len(challenged) == 1  # the others wait for this one's verdict
    for _ in range(5):
        i = next(i for i, o in enumerate(outcomes) if isinstance(o, sasl.SendChallenge))
        final = clients[i].client_final(outcomes[i].data)
        outcomes[i] = on_reactor(dialogues[i].respond, b64(final))
        settle(0.3)
        if not any(isinstance(o, sasl.SendChallenge) for o in outcomes):
            break
    verdicts = [o.credentials for o in outcomes]
    assert sum(1 for v in verdicts if v.throttled) == 3
    assert sum(1 for v in verdicts if not v.throttled and v.address is None) == 2


def test_a_client_that_never_sends_its_proof_loses_the_slot(accounts):
    clock = task.Clock()
    authn = make_authn(accounts, clock=clock)
    client = ScramClient(ALICE, PASSWORD)
    d = sasl.SaslDialogue(authn, IP, "imap")
    out = wait(on_reactor(d.start, "SCRAM-SHA-256", b64(client.client_first())))
    on_reactor(clock.advance, SCRAM_PROOF_SECONDS + 1)
    assert not authn._in_flight
    # The right proof, too late: a failure.
    late = on_reactor(d.respond, b64(client.client_final(out.data)))
    assert late == sasl.Ready(sasl.Verdict(ALICE, None))


def test_keys_are_set_with_the_password_and_dropped_with_an_imported_hash(authn, accounts):
    def stored():
        query = "SELECT password, scram FROM users WHERE address=?"
        return accounts._db().conn.execute(query, (ALICE,)).fetchone()

    hashed, scram = stored()
    assert scram.startswith("SCRAM-SHA-256$") and PASSWORD not in scram + hashed
    accounts.set_password(ALICE, "New-passw0rd")
    assert stored()[1] != scram
    assert exchange(authn, ALICE, "New-passw0rd", ip="192.0.2.50")[0].credentials.address == ALICE
    # A hash from another server: no keys can be made from it, so SCRAM fails...
    accounts.import_user_hash(ALICE, "{SHA512-CRYPT}" + sha512_crypt.hash("Imported-pw1"))
    assert stored()[1] is None
    assert exchange(authn, ALICE, "Imported-pw1", ip="192.0.2.51")[0].credentials.address is None
    # ...until the password itself is seen once.
    assert on_reactor(authn.login, ALICE, "Imported-pw1", "192.0.2.52", "imap") == ALICE
    assert stored()[1].startswith("SCRAM-SHA-256$")
    assert exchange(authn, ALICE, "Imported-pw1", ip="192.0.2.53")[0].credentials.address == ALICE


def test_a_database_from_before_scram_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE domains (name TEXT PRIMARY KEY);
        CREATE TABLE users (address TEXT PRIMARY KEY, password TEXT NOT NULL,
            quota_bytes INTEGER NOT NULL DEFAULT 0, quota_messages INTEGER NOT NULL DEFAULT 0,
            enabled INTEGER NOT NULL DEFAULT 1);
        CREATE TABLE aliases (source TEXT NOT NULL, target TEXT NOT NULL,
            PRIMARY KEY (source, target));
        INSERT INTO domains VALUES ('example.test');
        INSERT INTO users (address, password) VALUES ('old@example.test', 'x');
        """
    )
    conn.commit()
    conn.close()
    ensure_reactor()
    accounts = Accounts(path)
    assert accounts.get_user("old@example.test") is not None
    authn = make_authn(accounts)
    assert exchange(authn, "old@example.test", "pw-Old-1")[0].credentials.address is None
    accounts.set_password("old@example.test", "pw-Old-1")
    out = exchange(authn, "old@example.test", "pw-Old-1", ip="192.0.2.9")[0]
    assert out.credentials.address == "old@example.test"
    Accounts(path)  # opening a migrated database again changes nothing
