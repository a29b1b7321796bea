"""Echo: accept a notification for delivery. A 202 means the notification and its delivery row
are committed; anything else means nothing was stored."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import asyncpg

import sql
from service.database import Pool
from service.errors import CallbackDisabled, CallbackNotFound, IdempotencyKeyReused
from service.partners import ensure_partner

Q = sql.load_queries()


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


class Ingest:
    """Stores emissions. One transaction per emission."""

    def __init__(self, pool: Pool, idempotency_ttl: float) -> None:
        self._pool = pool
        self._idempotency_ttl = idempotency_ttl

    async def accept(self, emission: Emission) -> uuid.UUID:
        """Commit the notification and its delivery; return its id (the first one's, for a
        repeated Idempotency-Key)."""
        async with self._pool.acquire() as connection, connection.transaction():
            callback = await self._callback(connection, emission)
            notification_id = uuid.uuid4()
            if emission.idempotency_key is not None:
                earlier = await self._claim_key(connection, emission, notification_id)
                if earlier is not None:
                    return earlier
            await self._insert(connection, emission, notification_id, callback)
        return notification_id

    async def _callback(self, connection: asyncpg.Connection, emission: Emission) -> asyncpg.Record:
        callback = await connection.fetchrow(
            Q["callback_for_echo"], emission.partner_id, emission.notification_type
        )
        if callback is None:
            await ensure_partner(connection, emission.partner_id)
            raise CallbackNotFound("no callback is registered for this notification type")
        if not callback["enabled"]:
            raise CallbackDisabled()
        return callback

    async def _claim_key(
        self, connection: asyncpg.Connection, emission: Emission, notification_id: uuid.UUID
    ) -> uuid.UUID | None:
        """None when the key is ours now; the earlier notification's id when it is a repeat."""
        request_hash = emission.request_hash()
        taken = await connection.fetchval(
            Q["claim_idempotency_key"],
            emission.partner_id,
            emission.idempotency_key,
            request_hash,
            notification_id,
            self._idempotency_ttl,
        )
        if taken is not None:
            return None
        earlier = await connection.fetchrow(
            Q["get_idempotency_key"], emission.partner_id, emission.idempotency_key
        )
        assert earlier is not None
        if bytes(earlier["request_hash"]) != request_hash:
            raise IdempotencyKeyReused()
        return uuid.UUID(str(earlier["notification_id"]))

    async def _insert(
        self,
        connection: asyncpg.Connection,
        emission: Emission,
        notification_id: uuid.UUID,
        callback: asyncpg.Record,
    ) -> None:
        sequence = await connection.fetchval(
            Q["next_subject_sequence"], callback["id"], emission.subject
        )
        ready = await connection.fetchval(
            Q["insert_notification"],
            notification_id,
            emission.partner_id,
            emission.notification_type,
            emission.subject,
            emission.payload,
            callback["id"],
            sequence,
            callback["ordered_delivery"],
        )
        if ready:
            await connection.execute(Q["notify_due"])
