"""The retry policy's arithmetic: the attempt budget, the jitter, and Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dispatcher.retry import RetryPolicy, parse_retry_after


def test_schedule_gives_the_attempt_budget() -> None:
    policy = RetryPolicy((1.0, 2.0, 3.0), jitter=0.0)

    assert policy.max_attempts == 4
    assert [policy.exhausted(n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert [policy.delay(n) for n in (1, 2, 3)] == [1.0, 2.0, 3.0]


def test_jitter_stays_within_twenty_percent() -> None:
    policy = RetryPolicy((100.0,), jitter=0.2)

    delays = [policy.delay(1) for _ in range(500)]

    assert all(80.0 <= delay <= 120.0 for delay in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(100.0, 20.0), (15.0, 15.0), (0.0, 10.0), (3.0, 10.0)]
)
def test_retry_after_is_clamped_to_one_to_two_times_the_schedule(
    retry_after: float, expected: float
) -> None:
    policy = RetryPolicy((10.0, 60.0), jitter=0.2)

    assert policy.delay(1, retry_after) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("", None), (None, None), ("soon", None), ("-5", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(now - timedelta(seconds=90), usegmt=True)

    assert parse_retry_after(later, now) == 90.0
    assert parse_retry_after(earlier, now) == 0.0
