"""The delivery queue in PostgreSQL: claim due rows, and write back what the attempts did.

Both directions are batched: one statement claims many rows, one transaction finishes many.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

import sql
from dispatcher.circuit import Health
from dispatcher.retry import RetryPolicy
from dispatcher.sender import AttemptResult, Delivery
from service.core import tracing
from service.core.changes import Change, changes_from
from service.core.database import Pool
from service.core.delivery_options import DeliveryOptions
from service.core.statuses import DeliveryStatus, FailureReason
from service.core.tracing import TraceContext

Q = sql.load_queries("queue")


@dataclass(frozen=True)
class ClaimRequest:
    """What one claim asks for: more for the lanes this worker has, and new lanes."""

    wants: dict[int, int]  # callback id -> how many more deliveries (0: none now)
    new_lanes: int  # how many callbacks it may take on
    new_lane_depth: int  # deliveries per in-flight slot for a new lane (claim-ahead)
    default_max_in_flight: int
    probes: list[int] = dataclasses.field(default_factory=list)  # owned lanes due a probe


@dataclass(frozen=True)
class StoredHealth:
    """A callback's circuit as its row has it, for the lane that takes it on."""

    failures: int
    open: bool
    probe_interval: float | None
    last_error: str | None


@dataclass(frozen=True)
class Claimed:
    """Claimed deliveries, and each callback's limits as they are now."""

    deliveries: list[Delivery]
    limits: dict[int, tuple[int | None, float | None]]  # maxInFlight, maxPerSecond (None)
    health: dict[int, StoredHealth] = dataclasses.field(default_factory=dict)


async def claim(pool: Pool, request: ClaimRequest, lease_seconds: float, worker_id: str) -> Claimed:
    rows = await pool.fetch(
        Q["claim_lanes"],
        worker_id,
        lease_seconds,
        list(request.wants),
        list(request.wants.values()),
        request.new_lanes,
        request.new_lane_depth,
        request.default_max_in_flight,
        request.probes,
    )
    deliveries = [_delivery(row) for row in rows]
    limits: dict[int, tuple[int | None, float | None]] = {}
    health: dict[int, StoredHealth] = {}
    for row in rows:  # every row carries its callback's columns: read them once per callback
        callback_id = row["callback_id"]
        if callback_id not in limits:
            limits[callback_id] = (row["max_in_flight"], row["max_per_second"])
            health[callback_id] = StoredHealth(
                row["consecutive_failures"],
                row["circuit_open"],
                row["probe_interval"],
                row["last_error"],
            )
    if tracing.enabled() and deliveries:
        deliveries = await _with_trace_contexts(pool, deliveries)
    return Claimed(deliveries, limits, health)


async def renew(
    pool: Pool,
    worker_id: str,
    lease_seconds: float,
    owned: list[int],
    waiting: list[str],
    idle: list[int],
) -> set[int]:
    """Renew ownership of ``owned`` and the leases of ``waiting``, give up ``idle``; the
    callbacks still owned."""
    rows = await pool.fetch(
        Q["renew_lanes"],
        worker_id,
        lease_seconds,
        owned,
        waiting,  # ids as text: asyncpg encodes them as uuid without a UUID object each
        idle,
    )
    return {row["callback_id"] for row in rows}


async def _with_trace_contexts(pool: Pool, deliveries: list[Delivery]) -> list[Delivery]:
    """Each delivery with the trace context its echo stored (one more query, tracing only)."""
    rows = await pool.fetch(Q["trace_contexts"], [d.notification_id for d in deliveries])
    stored = {
        str(r["notification_id"]): TraceContext(r["traceparent"], r["tracestate"]) for r in rows
    }
    return [dataclasses.replace(d, trace_context=stored.get(d.notification_id)) for d in deliveries]


@functools.lru_cache(maxsize=4096)
def _options(stored: str | None) -> DeliveryOptions:
    """A callback's delivery options, parsed once per stored document (claimed as text: every
    row of a claim carries its callback's, and decoding each cost more than the attempt's
    signature)."""
    return DeliveryOptions.from_json(json.loads(stored) if stored is not None else None)


def _delivery(row: asyncpg.Record) -> Delivery:
    sealed: tuple[str, ...] = (row["signing_secret"],)
    if row["previous_secret"]:
        sealed += (row["previous_secret"],)
    return Delivery(
        notification_id=str(row["notification_id"]),
        callback_id=row["callback_id"],
        notification_type=row["notification_type"],
        url=row["url"],
        payload=bytes(row["payload"]),
        sealed_secrets=sealed,
        sealed_credentials=row["sealed_credentials"],
        options=_options(row["delivery_options"]),
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

    status: DeliveryStatus  # delivered, queued (a retry after ``delay``) or failed
    delay: float = 0.0
    reason: FailureReason | None = None


def judge(result: AttemptResult, policy: RetryPolicy) -> Verdict:
    if result.succeeded:
        return Verdict(DeliveryStatus.DELIVERED)
    if result.gone:
        return Verdict(DeliveryStatus.FAILED, reason=FailureReason.GONE)
    if result.failure is FailureReason.BLOCKED_ADDRESS:
        return Verdict(DeliveryStatus.FAILED, reason=FailureReason.BLOCKED_ADDRESS)
    if policy.exhausted(result.delivery.round_attempt):
        return Verdict(DeliveryStatus.FAILED, reason=result.failure or FailureReason.HTTP_ERROR)
    delay = policy.delay(result.delivery.round_attempt, result.retry_after)
    return Verdict(DeliveryStatus.QUEUED, delay)


@dataclass(frozen=True)
class Finished:
    """What one write-back recorded: a verdict per attempt, and what they changed."""

    verdicts: list[Verdict]
    changes: list[Change]


@dataclass(frozen=True)
class Recording:
    """How the write-back judges and records: the settings it needs, and who records."""

    policy: RetryPolicy
    disable_after: float
    failing_after: int
    worker_id: str


async def finish(
    pool: Pool,
    results: Sequence[AttemptResult],
    recording: Recording,
    health: Sequence[tuple[int, Health]] = (),
) -> Finished:
    """Record the attempts and their consequences, and the health of the callbacks whose
    circuit changed: one call of ``finish_attempts_v4``, one commit; returns the verdicts and
    the changes the SQL reports (operational events among them)."""
    policy = recording.policy
    verdicts = [judge(result, policy) for result in results]
    deliveries = [result.delivery for result in results]
    ordered = sorted({(d.callback_id, d.subject) for d in deliveries if d.ordered})
    gone = {r.delivery.callback_id for r in results if r.gone}
    rows = await pool.fetch(
        Q["finish_attempts"],
        [d.notification_id for d in deliveries],  # as text: asyncpg encodes it as uuid
        [d.attempt for d in deliveries],
        [r.started_at for r in results],
        [r.duration_ms for r in results],
        [r.status for r in results],
        [r.body for r in results],
        [r.error for r in results],
        [r.signature for r in results],
        [v.status for v in verdicts],
        [v.delay for v in verdicts],
        [v.reason for v in verdicts],
        [callback for callback, _ in ordered],
        [subject for _, subject in ordered],
        sorted({r.delivery.callback_id for r in results if r.succeeded}),
        sorted(gone),
        sorted({r.delivery.callback_id for r in results if not r.succeeded} - gone),
        recording.disable_after,
        recording.failing_after,
        recording.worker_id,
        [callback for callback, _ in health],
        [h.failures for _, h in health],
        [h.probe_in for _, h in health],
        [h.probe_interval for _, h in health],
        [h.paused_for for _, h in health],
        [h.last_error for _, h in health],
    )
    return Finished(verdicts, changes_from(rows))


async def release_leases(
    pool: Pool, notification_ids: list[str], worker_id: str, callbacks: Sequence[int] = ()
) -> None:
    """Give back unsent deliveries uncharged, and the ownership of ``callbacks``."""
    await pool.execute(Q["release_leases"], notification_ids, worker_id, list(callbacks))
