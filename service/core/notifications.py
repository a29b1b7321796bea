"""Storing the notifications that echo accepts, with group commit.

Concurrent echo requests share one transaction: a writer takes whatever has queued up since
its last commit, stores it in one batch, commits, and only then answers every caller. A 202
therefore always means "committed"; a failed commit fails every caller in the batch with
nothing stored. Under no load a batch is one notification and nothing waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import asyncpg
from opentelemetry import context as otel_context
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

import sql
from service.core import tracing
from service.core.database import Pool
from service.core.errors import (
    CallbackDisabled,
    CallbackNotFound,
    IdempotencyKeyReused,
    PartnerNotFound,
    Problem,
)
from service.core.ids import uuid7_batch
from service.core.tracing import TraceContext

log = logging.getLogger(__name__)
Q = sql.load_queries("notifications")
BATCH_LIMIT = 500


@dataclass(frozen=True)
class NewNotification:
    """One validated notification, ready to be stored."""

    partner_id: uuid.UUID
    notification_type: int
    subject: uuid.UUID
    payload: bytes
    idempotency_key: str | None = None
    trace_context: TraceContext | None = None  # only while tracing is on

    def request_hash(self) -> bytes:
        digest = hashlib.sha256(str(self.notification_type).encode())
        digest.update(b"\x00")
        digest.update(self.payload)
        return digest.digest()


class Accepted(NamedTuple):
    """A committed notification: its id, and whether this echo only repeated an earlier one
    (same Idempotency-Key and body: nothing new was stored)."""

    notification_id: uuid.UUID
    replay: bool = False


@dataclass
class _Item:
    """A notification waiting in the queue, with the future its caller awaits."""

    notification: NewNotification
    future: asyncio.Future[Accepted]
    request_hash: bytes | None = None


def _no_callback() -> Problem:
    return CallbackNotFound("no callback is registered for this notification type")


# The problem for each outcome of store_notifications_v1 that stored nothing.
_REFUSALS: dict[str, Callable[[], Problem]] = {
    "key_reused": IdempotencyKeyReused,
    "partner_not_found": PartnerNotFound,
    "callback_not_found": _no_callback,
    "callback_disabled": CallbackDisabled,
}


class NotificationWriter:
    """Queues notifications and stores them in batches, ``writers`` transactions at a time."""

    def __init__(self, pool: Pool, idempotency_ttl: float, writers: int = 2) -> None:
        self._pool = pool
        self._idempotency_ttl = idempotency_ttl
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._writers = [asyncio.create_task(self._write_forever()) for _ in range(writers)]

    async def accept(self, notification: NewNotification) -> Accepted:
        """The stored notification (the first one, for a repeated Idempotency-Key) once it is
        committed; raise a ``Problem`` or a database error."""
        keyed = notification.idempotency_key is not None
        request_hash = notification.request_hash() if keyed else None
        item = _Item(notification, asyncio.get_running_loop().create_future(), request_hash)
        self._queue.put_nowait(item)
        # No shield: a caller that goes away cancels the future, which the writer then skips
        # (it still stores the item, as it would for a caller that waited).
        return await item.future

    async def close(self) -> None:
        """Finish what is queued, then stop the writers."""
        await self._queue.join()
        for writer in self._writers:
            writer.cancel()
        for writer in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await writer

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_LIMIT and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(asyncpg.DeadlockDetectedError),
                stop=stop_after_attempt(3),
                reraise=True,
            ):
                with attempt:
                    await self._store(batch)
        except Exception as error:  # every caller hears of it; nothing was committed
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)

    async def _store(self, batch: list[_Item]) -> None:
        """One call of ``store_notifications_v1`` (sql/migrations/0003): find the callbacks,
        take the Idempotency-Keys, number the subjects and insert, committed in one round trip.
        A fresh notification id per attempt: a retried batch stored nothing the first time."""
        notifications = [item.notification for item in batch]
        arguments = [
            uuid7_batch(len(batch)),
            [n.partner_id for n in notifications],
            [n.notification_type for n in notifications],
            [n.subject for n in notifications],
            [n.payload for n in notifications],
            [n.idempotency_key for n in notifications],
            [item.request_hash for item in batch],
            self._idempotency_ttl,
        ]
        if tracing.enabled():
            rows = await self._store_traced(notifications, arguments)
        else:
            rows = await self._fetch(Q["store_notifications"], arguments)
        for row in rows:
            _answer(batch[row["item"] - 1], row["outcome"], row["stored_id"])

    async def _fetch(self, query: str, arguments: list[object]) -> list[asyncpg.Record]:
        connection = await self._pool.acquire()
        try:
            rows: list[asyncpg.Record] = await connection.fetch(query, *arguments)
        finally:
            await _release(self._pool, connection)
        return rows

    async def _store_traced(
        self, notifications: list[NewNotification], arguments: list[object]
    ) -> list[asyncpg.Record]:
        """The batch as a span linked to each echo's span, stored with each one's context."""
        contexts = [n.trace_context for n in notifications]
        with tracing.tracer().start_as_current_span(
            "store notifications",
            context=otel_context.Context(),  # its own trace: it has many parents, linked
            links=tracing.links_to(contexts),
            attributes={"callbackhub.batch.size": len(notifications)},
        ):
            traced = [
                [c.traceparent if c else None for c in contexts],
                [c.tracestate if c else None for c in contexts],
            ]
            return await self._fetch(Q["store_traced_notifications"], arguments + traced)


async def _release(pool: Pool, connection: asyncpg.Connection) -> None:
    """Give the connection back to the pool. Resetting it fails when the server went away
    just after the commit; that must not turn a committed batch into errors for its callers
    (an error from the transaction itself propagates regardless)."""
    try:
        await pool.release(connection)
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
    ) as error:
        log.warning("connection lost while returning it to the pool: %s", type(error).__name__)


def _answer(item: _Item, outcome: str, notification_id: uuid.UUID) -> None:
    if item.future.done():  # the caller went away; what was stored stays stored
        return
    if outcome in ("stored", "repeat"):
        item.future.set_result(Accepted(notification_id, replay=outcome == "repeat"))
    else:
        item.future.set_exception(_REFUSALS[outcome]())
