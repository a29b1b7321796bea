"""When to try again: the configured schedule, jitter, and the partner's Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_AFTER_STATUSES = frozenset({429, 503})


class RetryPolicy:
    def __init__(self, schedule: tuple[float, ...], jitter: float) -> None:
        self._schedule = schedule
        self._jitter = jitter

    @property
    def max_attempts(self) -> int:
        return len(self._schedule) + 1

    def exhausted(self, round_attempts: int) -> bool:
        """True when the attempt just made was the last one of this round."""
        return round_attempts >= self.max_attempts

    def delay(self, round_attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the ``round_attempts``-th failed attempt of this round."""
        scheduled = self._schedule[min(round_attempts, len(self._schedule)) - 1]
        if retry_after is not None:
            return min(max(retry_after, scheduled), 2 * scheduled)
        spread = scheduled * self._jitter
        return max(0.0, scheduled + random.uniform(-spread, spread))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
