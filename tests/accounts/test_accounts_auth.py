"""The twisted.cred authenticator: verification off the reactor, the failed-login throttle per
client IP and per account, and log lines that never carry the password."""

from __future__ import annotations

import pytest

from mailsuite.accounts.checker import Authenticator, AuthFailed, AuthThrottled
from mailsuite.accounts.throttle import FailedLoginThrottle
from tests.conftest import ensure_reactor, on_reactor

PASSWORD = "Sesame-0pen-pw"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def authn(accounts):
    ensure_reactor()
    accounts.add_user("alice@example.test", PASSWORD)
    throttle = FailedLoginThrottle(
        free_failures=2, base_delay=60, max_delay=600, lockout_failures=5, lockout_seconds=900
    )
    return Authenticator(accounts, throttle)


def login(authn, user, password, ip="192.0.2.1", protocol="imap"):
    return on_reactor(authn.login, user, password, ip, protocol)


def test_good_login_returns_the_canonical_address(authn):
    assert login(authn, "Alice@Example.Test", PASSWORD) == "alice@example.test"


def test_wrong_password_unknown_user_and_disabled_user_fail(authn, accounts):
    with pytest.raises(AuthFailed):
        login(authn, "alice@example.test", "wrong", ip="192.0.2.10")
    with pytest.raises(AuthFailed):
        login(authn, "ghost@example.test", PASSWORD, ip="192.0.2.11")
    accounts.set_enabled("alice@example.test", False)
    with pytest.raises(AuthFailed):
        login(authn, "alice@example.test", PASSWORD, ip="192.0.2.12")


def test_verification_runs_off_the_reactor(authn):
    def start():
        d = authn.login("alice@example.test", PASSWORD, "192.0.2.1", "pop3")
        # The argon2 check is in a worker thread: the reactor got the Deferred back unfired.
        fired_at_once = d.called
        return d.addCallback(lambda address: (fired_at_once, address))

    assert on_reactor(start) == (False, "alice@example.test")


def test_throttle_per_account_refuses_even_the_right_password(authn):
    for ip in ("192.0.2.1", "192.0.2.2"):
        with pytest.raises(AuthFailed):
            login(authn, "alice@example.test", "wrong", ip=ip)
    # The third try from yet another address: the account is throttled, the password not checked.
    with pytest.raises(AuthThrottled) as info:
        login(authn, "alice@example.test", PASSWORD, ip="192.0.2.3")
    assert 0 < info.value.retry_after <= 60
    assert "retry in" in str(info.value)


def test_throttle_per_ip_spares_other_clients(accounts):
    ensure_reactor()
    accounts.add_user("bob@example.test", PASSWORD)
    throttle = FailedLoginThrottle(free_failures=5, ip_lockout_failures=3, lockout_seconds=900)
    authn = Authenticator(accounts, throttle)
    for user in ("x@example.test", "y@example.test", "z@example.test"):
        with pytest.raises(AuthFailed):
            login(authn, user, "wrong", ip="198.51.100.7")
    with pytest.raises(AuthThrottled):
        login(authn, "bob@example.test", PASSWORD, ip="198.51.100.7")
    assert login(authn, "bob@example.test", PASSWORD, ip="198.51.100.8") == "bob@example.test"


def test_failures_are_logged_without_the_password(authn, logs):
    secret_guess = "My-Guessed-Secret-42"
    with pytest.raises(AuthFailed):
        login(authn, "alice@example.test", secret_guess, ip="203.0.113.9")
    assert login(authn, "alice@example.test", PASSWORD, ip="203.0.113.9")
    lines = logs.lines()
    assert any(
        "login failed for alice@example.test from 203.0.113.9" in line and "imap" in line
        for line in lines
    )
    assert any("login alice@example.test from 203.0.113.9" in line for line in lines)
    everything = "\n".join(lines) + "\n".join(repr(e) for e in logs.events)
    assert secret_guess not in everything
    assert PASSWORD not in everything


def test_throttle_delays_double_up_to_the_maximum_then_lock_out():
    clock = FakeClock()
    t = FailedLoginThrottle(
        free_failures=3,
        base_delay=1,
        max_delay=4,
        lockout_failures=8,
        lockout_seconds=300,
        ip_lockout_failures=100,
        clock=clock,
    )
    waits = []
    for i in range(8):
        waits.append(t.retry_after(f"10.0.0.{i}", "bob@example.test"))
        t.failed(f"10.0.0.{i}", "bob@example.test")
    assert waits[:4] == [0, 0, 0, 1]  # three free failures, then 1 s
    assert waits[4:7] == [2, 4, 4]  # doubling, capped at max_delay
    # Eight failures: locked out for lockout_seconds, whatever the address.
    assert t.retry_after("10.9.9.9", "BOB@example.test") == 300
    clock.now += 299
    assert t.retry_after("10.9.9.9", "bob@example.test") == pytest.approx(1)
    clock.now += 2
    assert t.retry_after("10.9.9.9", "bob@example.test") == 0


def test_success_clears_the_account_but_not_the_ip():
    clock = FakeClock()
    t = FailedLoginThrottle(
        free_failures=1,
        base_delay=10,
        max_delay=100,
        ip_lockout_failures=50,
        ip_free_failures=1,
        clock=clock,
    )
    t.failed("10.0.0.1", "a@example.test")
    t.failed("10.0.0.1", "a@example.test")
    assert t.retry_after("10.0.0.2", "a@example.test") == 20
    t.succeeded("10.0.0.1", "a@example.test")
    assert t.retry_after("10.0.0.2", "a@example.test") == 0
    assert t.retry_after("10.0.0.1", "b@example.test") == 20  # the IP's record stays


def test_a_shared_address_is_not_slowed_by_a_few_failures_of_other_users():
    # Outlook.com and carriers put many users behind one address: the accounts that failed wait,
    # the address as a whole only after ip_free_failures.
    clock = FakeClock()
    t = FailedLoginThrottle(free_failures=1, base_delay=10, ip_free_failures=7, clock=clock)
    for user in ("a", "a", "b", "c", "d", "e"):
        t.failed("203.0.113.5", f"{user}@example.test")
    assert t.retry_after("203.0.113.5", "a@example.test") > 0
    assert t.retry_after("203.0.113.5", "zed@example.test") == 0
    t.failed("203.0.113.5", "f@example.test")
    assert t.retry_after("203.0.113.5", "zed@example.test") > 0


def test_waiting_out_the_delay_allows_the_next_try():
    clock = FakeClock()
    t = FailedLoginThrottle(free_failures=0, base_delay=5, clock=clock)
    t.failed("10.0.0.1", "a@example.test")
    assert t.retry_after("10.0.0.1", "a@example.test") == 10  # base * 2 ** (failures - free)
    clock.now += 10.01
    assert t.retry_after("10.0.0.1", "a@example.test") == 0
