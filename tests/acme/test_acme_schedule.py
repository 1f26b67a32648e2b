"""The renewal window and the back-off (mailsuite/acme/schedule.py), without a clock."""

from __future__ import annotations

import random

import pytest

from mailsuite.acme.schedule import (
    CHECK_INTERVAL,
    DAY,
    RETRY_FIRST,
    RETRY_MAX,
    next_attempt,
    next_wake,
    renewal_time,
    retry_delay,
)


def test_a_90_day_certificate_is_renewed_30_days_before_expiry():
    assert renewal_time(0, 90 * DAY) == 60 * DAY


def test_a_year_long_certificate_is_still_renewed_30_days_before_expiry():
    assert renewal_time(0, 365 * DAY) == 335 * DAY


def test_a_short_lived_certificate_is_renewed_with_a_third_of_its_life_left():
    assert renewal_time(1000, 1000 + 6 * DAY) == pytest.approx(1000 + 4 * DAY)
    assert renewal_time(0, 15) == pytest.approx(10)


def test_retry_delays_double_from_ten_minutes_to_a_day_with_jitter():
    rng = random.Random(7)
    for failures, ceiling in ((1, RETRY_FIRST), (2, 2 * RETRY_FIRST), (3, 4 * RETRY_FIRST)):
        for _ in range(50):
            assert ceiling / 2 <= retry_delay(failures, rng) <= ceiling
    for _ in range(50):
        assert RETRY_MAX / 2 <= retry_delay(40, rng) <= RETRY_MAX
    assert len({round(retry_delay(1, rng)) for _ in range(20)}) > 1  # jittered


def test_without_a_certificate_the_first_attempt_is_now():
    assert next_attempt(500.0, None, None, 0, 0.0) == 500.0


def test_a_failure_defers_the_next_attempt_to_its_back_off():
    assert next_attempt(500.0, None, None, 1, 1100.0) == 1100.0
    # A renewal that is due waits for the back-off as well: never a tight loop.
    assert next_attempt(70 * DAY, 0, 90 * DAY, 2, 70 * DAY + 900) == 70 * DAY + 900


def test_a_valid_certificate_waits_for_its_renewal_time():
    assert next_attempt(DAY, 0, 90 * DAY, 0, 0.0) == 60 * DAY


def test_the_server_looks_again_twice_a_day_at_the_latest():
    assert next_wake(0.0, 60 * DAY) == CHECK_INTERVAL == DAY / 2
    assert next_wake(0.0, 30.0) == 30.0
