"""What the dispatcher tells Prometheus and the log about finished attempts."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from dispatcher.queue import Verdict
from dispatcher.sender import AttemptResult
from service.core.metrics import ATTEMPT_DURATION, DELIVERY_OUTCOMES, END_TO_END_LAG
from service.core.statuses import DeliveryStatus

log = logging.getLogger("dispatcher.outcomes")


_OUTCOME_NAMES = {DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.QUEUED: "retried"}


def outcome_name(result: AttemptResult, verdict: Verdict) -> str:
    if result.blocked:
        return "blocked"
    return _OUTCOME_NAMES.get(verdict.status, "failed")


def observe(
    results: Sequence[AttemptResult], verdicts: Sequence[Verdict], per_partner: bool
) -> None:
    now = datetime.now(UTC)
    debug = log.isEnabledFor(logging.DEBUG)  # else only failures are logged
    # Counted per label set, then added once each: a batch is hundreds of attempts of a few kinds.
    counts: Counter[tuple[str, str, str]] = Counter()
    for result, verdict in zip(results, verdicts, strict=True):
        delivery = result.delivery
        outcome = outcome_name(result, verdict)
        partner = delivery.partner_id if per_partner else ""
        counts[outcome, str(delivery.notification_type), partner] += 1
        ATTEMPT_DURATION.observe(result.duration_ms / 1000)
        if outcome == "delivered" and delivery.accepted_at is not None:
            END_TO_END_LAG.observe((now - delivery.accepted_at).total_seconds())
        if debug or outcome in ("failed", "blocked"):
            _log(result, outcome)
    for labels, count in counts.items():
        DELIVERY_OUTCOMES.labels(*labels).inc(count)


def _log(result: AttemptResult, outcome: str) -> None:
    level = logging.INFO if outcome in ("failed", "blocked") else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    log.log(
        level,
        "attempt %s",
        outcome,
        extra={
            "notification_id": result.delivery.notification_id,
            "attempt": result.delivery.attempt,
            "status": result.status,
            "error": result.error,
            "duration_ms": result.duration_ms,
        },
    )
