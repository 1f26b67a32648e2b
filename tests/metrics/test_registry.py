"""The metric objects on their own: label values a client cannot multiply, reasons, and the
disabled object that counts nothing."""

from __future__ import annotations

import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mailsuite.accounts.checker import Authenticator, AuthFailed, AuthThrottled
from mailsuite.accounts.db import Accounts
from mailsuite.accounts.throttle import FailedLoginThrottle
from mailsuite.metrics import DISABLED, Metrics
from mailsuite.metrics.registry import MAX_COMMAND_LABELS
from tests.conftest import ensure_reactor, on_reactor


def samples(metrics: Metrics) -> dict:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_imap_command_labels_are_bounded_whatever_names_a_client_sends():
    m = Metrics()
    for i in range(MAX_COMMAND_LABELS + 50):
        m.imap_command(f"X{i}", time.monotonic())
    names = {
        labels for (name, labels) in samples(m) if name == "mailsuite_imap_command_seconds_count"
    }
    assert len(names) == MAX_COMMAND_LABELS + 1
    count = samples(m)[("mailsuite_imap_command_seconds_count", (("command", "other"),))]
    assert count == 50


class QuotaExceeded(Exception):
    pass


def test_refusals_are_counted_by_reason_from_the_exception():
    m = Metrics()
    m.message_refused(QuotaExceeded())
    m.message_refused(ValueError())
    s = samples(m)
    assert s[("mailsuite_messages_refused_total", (("reason", "quota"),))] == 1
    assert s[("mailsuite_messages_refused_total", (("reason", "error"),))] == 1
    assert s[("mailsuite_messages_refused_total", (("reason", "policy"),))] == 0


def test_disabled_metrics_count_nothing_and_keep_no_state():
    DISABLED.connected("smtp")
    DISABLED.listening("smtp", "127.0.0.1:25", False)
    DISABLED.probe(lambda: [("mailsuite_x", "x", 1.0)])
    assert DISABLED.listeners_down() == []
    assert generate_latest(DISABLED.registry) == b""


def test_listeners_down_names_each_listener_not_listening():
    m = Metrics()
    m.listening("smtp", "0.0.0.0:25", True)
    m.listening("imap", "[::]:143", False)
    assert m.listeners_down() == ["imap [::]:143"]


def test_logins_are_counted_ok_failed_and_throttled_by_mechanism(tmp_path):
    ensure_reactor()
    accounts = Accounts(tmp_path / "accounts.sqlite", ["example.test"])
    accounts.add_user("alice@example.test", "Sesame-0pen-pw")
    throttle = FailedLoginThrottle(free_failures=1, base_delay=60, max_delay=600)
    m = Metrics()
    authn = Authenticator(accounts, throttle, metrics=m)
    ip = "192.0.2.7"
    user = "alice@example.test"
    assert on_reactor(authn.login, user, "Sesame-0pen-pw", ip, "imap", "PLAIN") == user
    with pytest.raises(AuthFailed):
        on_reactor(authn.login, user, "wrong", ip, "imap")
    with pytest.raises(AuthThrottled):
        on_reactor(authn.login, user, "wrong", ip, "imap")
    s = samples(m)
    assert s[("mailsuite_logins_total", (("mechanism", "PLAIN"), ("result", "ok")))] == 1
    assert s[("mailsuite_logins_total", (("mechanism", "command"), ("result", "failed")))] == 1
    assert s[("mailsuite_logins_total", (("mechanism", "command"), ("result", "throttled")))] == 1
