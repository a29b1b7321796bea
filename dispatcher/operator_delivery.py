"""Delivering operational events to the operator webhook.

Events have the guarantees notifications have: claimed under a lease, signed with the operator
webhook's secret (Standard Webhooks headers; ``webhook-id`` is the event's id), retried on the
same schedule, every attempt logged. They go out through a session of their own and a few at
a time, beside the lanes: a failing operator endpoint never delays a partner's delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

import sql
from dispatcher.retry import RetryPolicy
from dispatcher.sender import AttemptResult, Delivery, Sender, internal_error
from service.core.database import DATABASE_DOWN, Pool
from service.core.runtime import wait_until_set
from service.core.statuses import FailureReason

log = logging.getLogger(__name__)
Q = sql.load_queries("operator_events")
IN_FLIGHT = 4  # events sent at once by one dispatcher


class OperatorDelivery:
    def __init__(
        self,
        pool: Pool,
        sender: Sender,
        policy: RetryPolicy,
        worker_id: str,
        lease_seconds: float,
        poll_interval: float,
    ) -> None:
        self._pool = pool
        self._sender = sender
        self._policy = policy
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                claimed = await self._pool.fetch(
                    Q["claim_operator_events"], self._worker_id, self._lease_seconds, IN_FLIGHT
                )
            except DATABASE_DOWN as error:
                log.warning("operator events: database unavailable (%s)", type(error).__name__)
                claimed = []
            if claimed:
                await self._deliver([_delivery(row) for row in claimed])
                continue
            await wait_until_set(self._wake, self._poll_interval)

    async def _deliver(self, deliveries: list[Delivery]) -> None:
        try:
            results = await asyncio.gather(*(self._attempt(d) for d in deliveries))
        except asyncio.CancelledError:  # shutting down: what was not recorded goes back
            ids = [uuid.UUID(d.notification_id) for d in deliveries]
            with contextlib.suppress(*DATABASE_DOWN):
                await asyncio.shield(
                    self._pool.execute(Q["release_operator_events"], ids, self._worker_id)
                )
            raise
        while True:
            try:
                await self._record(results)
                return
            except DATABASE_DOWN as error:  # keep the results until it answers
                log.warning("operator events: cannot record (%s)", type(error).__name__)
                await asyncio.sleep(self._poll_interval)

    async def _attempt(self, delivery: Delivery) -> AttemptResult:
        started_at = datetime.now(UTC)
        try:
            return await self._sender.attempt(delivery)
        except Exception as error:
            log.exception("operator event attempt failed inside callbackhub")
            return internal_error(delivery, started_at, error)

    async def _record(self, results: Sequence[AttemptResult]) -> None:
        verdicts = [self._judge(r) for r in results]
        await self._pool.execute(
            Q["finish_operator_events"],
            [uuid.UUID(r.delivery.notification_id) for r in results],
            [r.delivery.attempt for r in results],
            [r.started_at for r in results],
            [r.duration_ms for r in results],
            [r.status for r in results],
            [r.body for r in results],
            [r.error for r in results],
            [v[0] for v in verdicts],
            [v[1] for v in verdicts],
            [v[2] for v in verdicts],
        )

    def _judge(self, result: AttemptResult) -> tuple[str, float, str | None]:
        """delivered, queued (after a delay) or failed, with the failure's reason."""
        if result.succeeded:
            return "delivered", 0.0, None
        reason = result.failure or FailureReason.HTTP_ERROR
        if result.blocked or self._policy.exhausted(result.delivery.round_attempt):
            return "failed", 0.0, reason.value
        return "queued", self._policy.delay(result.delivery.round_attempt, result.retry_after), None


def _delivery(row: asyncpg.Record) -> Delivery:
    sealed: tuple[str, ...] = (row["signing_secret"],)
    if row["previous_secret"]:
        sealed += (row["previous_secret"],)
    return Delivery(
        notification_id=str(row["id"]),
        callback_id=0,
        notification_type=0,
        url=row["url"],
        payload=row["body"].encode(),
        sealed_secrets=sealed,
        sealed_credentials=None,
        attempt=row["attempts"],
        round_attempt=row["round_attempts"],
        sequence=0,
        ordered=False,
        subject="",
        operator_event=row["type"],
    )
