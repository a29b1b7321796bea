"""The delivery queue in PostgreSQL: claim due rows, and write back what the attempts did.

Both directions are batched: one statement claims many rows, one transaction finishes many.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

import sql
from dispatcher.retry import RetryPolicy
from dispatcher.sender import AttemptResult, Delivery
from service.database import Pool

Q = sql.load_queries()


@dataclass(frozen=True)
class ClaimLimits:
    """How much one claim may take, given what this worker already has in flight."""

    total: int
    per_callback: int
    busy: dict[int, int] = field(default_factory=dict)  # callback id -> free slots

    def saturated(self) -> list[int]:
        return [callback for callback, free in self.busy.items() if free <= 0]


async def claim(
    pool: Pool, limits: ClaimLimits, lease_seconds: float, worker_id: str
) -> list[Delivery]:
    partly_busy = {cb: free for cb, free in limits.busy.items() if free > 0}
    rows = await pool.fetch(
        Q["claim_due"],
        limits.total,
        limits.total * 4,
        limits.saturated(),
        list(partly_busy),
        list(partly_busy.values()),
        limits.per_callback,
        lease_seconds,
        worker_id,
    )
    return [_delivery(row) for row in rows]


def _delivery(row: asyncpg.Record) -> Delivery:
    secrets: tuple[str, ...] = (row["signing_secret"],)
    if row["previous_secret"]:
        secrets += (row["previous_secret"],)
    return Delivery(
        notification_id=str(row["notification_id"]),
        callback_id=row["callback_id"],
        notification_type=row["notification_type"],
        url=row["url"],
        payload=bytes(row["payload"]),
        secrets=secrets,
        attempt=row["attempts"],
        round_attempt=row["round_attempts"],
        sequence=row["sequence"],
        ordered=row["ordered"],
        subject=str(row["subject"]),
        partner_id=str(row["partner_id"]),
        accepted_at=row["accepted_at"],
    )


@dataclass(frozen=True)
class Verdict:
    """What becomes of a delivery after one attempt."""

    status: str  # delivered | queued (retry) | failed
    delay: float = 0.0
    reason: str | None = None


def judge(result: AttemptResult, policy: RetryPolicy) -> Verdict:
    if result.succeeded:
        return Verdict("delivered")
    if result.gone:
        return Verdict("failed", reason="gone")
    if result.blocked:
        return Verdict("failed", reason="blocked_address")
    if policy.exhausted(result.delivery.round_attempt):
        return Verdict("failed", reason=_reason(result))
    return Verdict("queued", policy.delay(result.delivery.round_attempt, result.retry_after))


def _reason(result: AttemptResult) -> str:
    if result.status is not None:
        return f"http_{result.status}"
    return (result.error or "error")[:200]


async def finish(
    pool: Pool, results: Sequence[AttemptResult], policy: RetryPolicy, disable_after: float
) -> list[Verdict]:
    """Record the attempts and their consequences: one call of ``finish_batch``, one commit."""
    verdicts = [judge(result, policy) for result in results]
    deliveries = [result.delivery for result in results]
    ordered = sorted({(d.callback_id, d.subject) for d in deliveries if d.ordered})
    gone = {r.delivery.callback_id for r in results if r.gone}
    await pool.execute(
        Q["finish_batch"],
        [uuid.UUID(d.notification_id) for d in deliveries],
        [d.attempt for d in deliveries],
        [r.started_at for r in results],
        [r.duration_ms for r in results],
        [r.status for r in results],
        [r.body for r in results],
        [r.error for r in results],
        [v.status for v in verdicts],
        [v.delay for v in verdicts],
        [v.reason for v in verdicts],
        [callback for callback, _ in ordered],
        [uuid.UUID(subject) for _, subject in ordered],
        sorted({r.delivery.callback_id for r in results if r.succeeded}),
        sorted(gone),
        sorted({r.delivery.callback_id for r in results if not r.succeeded} - gone),
        disable_after,
    )
    return verdicts


async def release_leases(pool: Pool, notification_ids: list[str], worker_id: str) -> None:
    await pool.execute(Q["release_leases"], [uuid.UUID(n) for n in notification_ids], worker_id)
