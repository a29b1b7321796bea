"""Callbacks: one URL per partner and notification type, with the secret that signs deliveries."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

import sql
from service.core.callback_health import disable_callbacks
from service.core.database import Pool, retry_on_conflict
from service.core.errors import CallbackNotFound, PartnerNotFound, ValidationFailed
from service.core.notification_types import ORDERED_BY_DEFAULT, payload_model, type_name
from service.core.ordering import lock_partner_subjects
from service.core.partners import ensure_partner
from service.core.schemas import Callback, CallbackCreated, CallbackPage, CallbackUpdate
from service.core.signing import new_signing_secret
from service.core.statuses import DisabledReason

Q = sql.load_queries("callbacks")


def ensure_supported_type(notification_type: int) -> None:
    if payload_model(notification_type) is None:
        message = f"notification type {notification_type} is not supported"
        raise ValidationFailed(message, errors=[{"field": "notificationType", "message": message}])


def _callback(row: asyncpg.Record | dict[str, Any]) -> Callback:
    return Callback(
        partner_unique_id=row["partner_id"],
        notification_type=row["notification_type"],
        notification_type_name=type_name(row["notification_type"]),
        url=row["url"],
        enabled=row["enabled"],
        description=row["description"],
        ordered_delivery=row["ordered_delivery"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@retry_on_conflict
async def upsert_callback(
    pool: Pool, partner_id: uuid.UUID, notification_type: int, update: CallbackUpdate
) -> tuple[Callback, bool]:
    """Create or update the callback; returns it and whether it was created.

    Disabling it fails its pending notifications (they can be redelivered once it is enabled).
    """
    ensure_supported_type(notification_type)
    async with pool.acquire() as connection, connection.transaction():
        try:
            row = await connection.fetchrow(
                Q["upsert_callback"],
                partner_id,
                notification_type,
                update.url,
                update.enabled,
                update.description,
                update.ordered_delivery,
                notification_type in ORDERED_BY_DEFAULT,
                new_signing_secret(),
            )
        except asyncpg.ForeignKeyViolationError:
            raise PartnerNotFound() from None
        assert row is not None
        if not update.enabled and not row["created"]:
            await disable_callbacks(connection, [row["id"]], DisabledReason.DISABLED_BY_USER)
            disabled = await get_callback_row(connection, partner_id, notification_type)
            row = dict(row) | dict(disabled)
    if row["created"]:
        return CallbackCreated(
            **_callback(row).model_dump(), signing_secret=row["signing_secret"]
        ), True
    return _callback(row), False


async def get_callback_row(
    connection: asyncpg.Connection | Pool, partner_id: uuid.UUID, notification_type: int
) -> asyncpg.Record:
    row = await connection.fetchrow(Q["get_callback"], partner_id, notification_type)
    if row is None:
        await ensure_partner(connection, partner_id)
        raise CallbackNotFound()
    return row


async def get_callback(pool: Pool, partner_id: uuid.UUID, notification_type: int) -> Callback:
    return _callback(await get_callback_row(pool, partner_id, notification_type))


async def get_signing_secret(pool: Pool, partner_id: uuid.UUID, notification_type: int) -> str:
    row = await get_callback_row(pool, partner_id, notification_type)
    return str(row["signing_secret"])


async def list_callbacks(
    pool: Pool, partner_id: uuid.UUID, offset: int, limit: int
) -> CallbackPage:
    await ensure_partner(pool, partner_id)
    rows = await pool.fetch(Q["list_callbacks"], partner_id, offset, limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_callbacks"], partner_id)
    return CallbackPage(items=[_callback(r) for r in rows], offset=offset, limit=limit, total=total)


@retry_on_conflict
async def delete_callback(pool: Pool, partner_id: uuid.UUID, notification_type: int) -> None:
    """Delete the callback; its pending notifications are cancelled."""
    async with pool.acquire() as connection, connection.transaction():
        row = await get_callback_row(connection, partner_id, notification_type)
        await lock_partner_subjects(connection, partner_id, row["id"])
        await connection.execute(Q["cancel_callback_deliveries"], row["id"])
        await connection.execute(Q["delete_callback"], row["id"])


async def rotate_signing_secret(
    pool: Pool, partner_id: uuid.UUID, notification_type: int, overlap_seconds: float
) -> str:
    """A new secret; the old one keeps signing next to it for ``overlap_seconds``."""
    secret = await pool.fetchval(
        Q["rotate_secret"], partner_id, notification_type, overlap_seconds, new_signing_secret()
    )
    if secret is None:
        await get_callback_row(pool, partner_id, notification_type)
    return str(secret)
