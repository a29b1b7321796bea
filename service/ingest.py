"""Echo: accept notifications for delivery, with group commit.

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
from collections import Counter
from dataclasses import dataclass, field

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

import sql
from service.database import Pool
from service.errors import (
    CallbackDisabled,
    CallbackNotFound,
    IdempotencyKeyReused,
    PartnerNotFound,
    Problem,
)

log = logging.getLogger(__name__)
Q = sql.load_queries()
BATCH_LIMIT = 500


@dataclass(frozen=True)
class Emission:
    """One validated notification, ready to be stored."""

    partner_id: uuid.UUID
    notification_type: int
    subject: uuid.UUID
    payload: bytes
    idempotency_key: str | None = None

    def request_hash(self) -> bytes:
        digest = hashlib.sha256(str(self.notification_type).encode())
        digest.update(b"\x00")
        digest.update(self.payload)
        return digest.digest()


@dataclass
class _Item:
    """An emission in a batch, and what became of it."""

    emission: Emission
    future: asyncio.Future[uuid.UUID]
    notification_id: uuid.UUID = field(default=uuid.UUID(int=0))  # each attempt draws one
    callback_id: int = 0
    ordered: bool = False
    sequence: int = 0
    ready: bool = True
    outcome: uuid.UUID | Problem | None = None  # set when decided without inserting


class Ingest:
    """Queues emissions and stores them in batches, ``writers`` transactions at a time."""

    def __init__(self, pool: Pool, idempotency_ttl: float, writers: int = 2) -> None:
        self._pool = pool
        self._idempotency_ttl = idempotency_ttl
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._writers = [asyncio.create_task(self._write_forever()) for _ in range(writers)]

    async def accept(self, emission: Emission) -> uuid.UUID:
        """Return the stored notification's id (the first one's, for a repeated
        Idempotency-Key) once it is committed; raise a ``Problem`` or a database error."""
        item = _Item(emission, asyncio.get_running_loop().create_future())
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
            return
        for item in batch:
            _answer(item)

    async def _store(self, batch: list[_Item]) -> None:
        for item in batch:
            item.outcome, item.notification_id = None, uuid.uuid4()
        connection = await self._pool.acquire()
        try:
            async with connection.transaction():
                await _match_callbacks(connection, batch)
                await self._claim_keys(connection, batch)
                inserting = [item for item in batch if item.outcome is None]
                if inserting:
                    await _assign_sequences(connection, inserting)
                    await _insert(connection, inserting)
        finally:
            await _release(self._pool, connection)

    async def _claim_keys(self, connection: asyncpg.Connection, batch: list[_Item]) -> None:
        keyed = [i for i in batch if i.outcome is None and i.emission.idempotency_key is not None]
        for item in sorted(
            keyed, key=lambda i: (i.emission.partner_id, i.emission.idempotency_key)
        ):
            item.outcome = await self._claim_key(connection, item)

    async def _claim_key(
        self, connection: asyncpg.Connection, item: _Item
    ) -> uuid.UUID | Problem | None:
        """None when the key is this item's now; the earlier notification's id for a repeat."""
        emission, request_hash = item.emission, item.emission.request_hash()
        taken = await connection.fetchval(
            Q["claim_idempotency_key"],
            emission.partner_id,
            emission.idempotency_key,
            request_hash,
            item.notification_id,
            self._idempotency_ttl,
        )
        if taken is not None:
            return None
        earlier = await connection.fetchrow(
            Q["get_idempotency_key"], emission.partner_id, emission.idempotency_key
        )
        assert earlier is not None
        if bytes(earlier["request_hash"]) != request_hash:
            return IdempotencyKeyReused()
        return uuid.UUID(str(earlier["notification_id"]))


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


def _answer(item: _Item) -> None:
    if item.future.done():
        return
    if isinstance(item.outcome, Problem):
        item.future.set_exception(item.outcome)
    else:
        item.future.set_result(item.outcome or item.notification_id)


async def _match_callbacks(connection: asyncpg.Connection, batch: list[_Item]) -> None:
    """Find each item's callback; items without an enabled one get their 404 or 409."""
    rows = await connection.fetch(
        Q["callbacks_for_batch"],
        [i.emission.partner_id for i in batch],
        [i.emission.notification_type for i in batch],
    )
    callbacks = {(r["partner_id"], r["notification_type"]): r for r in rows}
    missing = [
        i for i in batch if (i.emission.partner_id, i.emission.notification_type) not in callbacks
    ]
    partners = await _existing_partners(connection, missing)
    for item in batch:
        callback = callbacks.get((item.emission.partner_id, item.emission.notification_type))
        if callback is None:
            item.outcome = (
                CallbackNotFound("no callback is registered for this notification type")
                if item.emission.partner_id in partners
                else PartnerNotFound()
            )
        elif not callback["enabled"]:
            item.outcome = CallbackDisabled()
        else:
            item.callback_id, item.ordered = callback["id"], callback["ordered_delivery"]


async def _existing_partners(connection: asyncpg.Connection, items: list[_Item]) -> set[uuid.UUID]:
    if not items:
        return set()
    rows = await connection.fetch(Q["existing_partners"], [i.emission.partner_id for i in items])
    return {row["id"] for row in rows}


async def _assign_sequences(connection: asyncpg.Connection, items: list[_Item]) -> None:
    """Number the items per (callback, subject) in arrival order; an ordered item is ready
    only when nothing earlier of its subject is still pending."""
    counts = Counter((i.callback_id, i.emission.subject) for i in items)
    keys = sorted(counts)
    ordered = {(i.callback_id, i.emission.subject) for i in items if i.ordered}
    rows = await connection.fetch(
        Q["next_subject_sequences"],
        [k[0] for k in keys],
        [k[1] for k in keys],
        [counts[k] for k in keys],
    )
    next_value = {
        (r["callback_id"], r["subject"]): r["last_value"]
        - counts[(r["callback_id"], r["subject"])]
        + 1
        for r in rows
    }
    busy = await _subjects_with_pending(connection, [k for k in keys if k in ordered])
    for item in items:
        key = (item.callback_id, item.emission.subject)
        item.sequence = next_value[key]
        next_value[key] += 1
        item.ready = not (item.ordered and key in busy)
        if item.ordered:
            busy.add(key)


async def _subjects_with_pending(
    connection: asyncpg.Connection, keys: list[tuple[int, uuid.UUID]]
) -> set[tuple[int, uuid.UUID]]:
    """Which ordered (callback, subject) pairs still have an earlier notification pending.
    Unordered ones never wait, so a batch without ordered items skips the round trip."""
    if not keys:
        return set()
    pending = await connection.fetch(
        Q["subjects_with_pending"], [k[0] for k in keys], [k[1] for k in keys]
    )
    return {(r["callback_id"], r["subject"]) for r in pending}


async def _insert(connection: asyncpg.Connection, items: list[_Item]) -> None:
    await connection.execute(
        Q["insert_batch"],
        [i.notification_id for i in items],
        [i.emission.partner_id for i in items],
        [i.emission.notification_type for i in items],
        [i.emission.subject for i in items],
        [i.emission.payload for i in items],
        [i.callback_id for i in items],
        [i.sequence for i in items],
        [i.ordered for i in items],
        [i.ready for i in items],
        any(i.ready for i in items),
    )
