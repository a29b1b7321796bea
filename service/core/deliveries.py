"""The delivery log a partner reads, and redelivery."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

import sql
from service.core import audit
from service.core.audit import Actor, AuditAction
from service.core.changes import log_changes
from service.core.database import Pool, retry_on_conflict
from service.core.errors import CallbackDisabled, CallbackNotFound, Conflict, NotificationNotFound
from service.core.ordering import lock_subjects, release_successors
from service.core.partners import ensure_partner
from service.core.schemas import (
    Attempt,
    NotificationDetail,
    NotificationFilter,
    NotificationPage,
    NotificationSummary,
)
from service.core.statuses import DeliveryStatus
from service.core.tracing import trace_id_of

Q = sql.load_queries("deliveries")


def _summary_fields(row: asyncpg.Record, blocked_by: uuid.UUID | None) -> dict[str, Any]:
    queued = row["status"] == DeliveryStatus.QUEUED
    return {
        "notification_id": row["notification_id"],
        "notification_type": row["notification_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "created_at": row["created_at"],
        "last_attempt_at": row["last_attempt_at"],
        "next_attempt_at": row["next_attempt_at"] if queued else None,
        "delivered_at": row["delivered_at"],
        "failure_reason": row["failure_reason"],
        "blocked_by": blocked_by,
    }


async def _blockers(pool: Pool, rows: list[asyncpg.Record]) -> dict[uuid.UUID, uuid.UUID]:
    queued = DeliveryStatus.QUEUED
    waiting = [r["notification_id"] for r in rows if r["status"] == queued and r["ordered"]]
    if not waiting:
        return {}
    found = await pool.fetch(Q["blocked_by"], waiting)
    return {r["notification_id"]: r["blocked_by"] for r in found if r["blocked_by"] is not None}


async def list_notifications(
    pool: Pool, partner_id: uuid.UUID, wanted: NotificationFilter
) -> NotificationPage:
    await ensure_partner(pool, partner_id)
    args = (
        partner_id,
        wanted.status,
        wanted.notification_type,
        wanted.since,
        wanted.until,
        wanted.subject,
    )
    rows = await pool.fetch(Q["list_notifications"], *args, wanted.offset, wanted.limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_notifications"], *args)
    blockers = await _blockers(pool, rows)
    items = [
        NotificationSummary(**_summary_fields(r, blockers.get(r["notification_id"]))) for r in rows
    ]
    return NotificationPage(items=items, offset=wanted.offset, limit=wanted.limit, total=total)


def _payload(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


async def get_notification(
    pool: Pool, partner_id: uuid.UUID, notification_id: uuid.UUID
) -> NotificationDetail:
    row = await pool.fetchrow(Q["get_notification"], partner_id, notification_id)
    if row is None:
        await ensure_partner(pool, partner_id)
        raise NotificationNotFound()
    blockers = await _blockers(pool, [row])
    attempts = await pool.fetch(Q["list_attempts"], notification_id)
    return NotificationDetail(
        **_summary_fields(row, blockers.get(notification_id)),
        sequence=row["sequence"],
        trace_id=trace_id_of(row["traceparent"]),
        payload=_payload(bytes(row["payload"])),
        attempt_log=[Attempt.model_validate(dict(a)) for a in attempts],
    )


@retry_on_conflict
async def redeliver(
    pool: Pool, partner_id: uuid.UUID, notification_id: uuid.UUID, actor: Actor
) -> None:
    """Queue the notification again with a fresh attempt budget and the same webhook-id."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(Q["get_notification"], partner_id, notification_id)
        if row is None:
            await ensure_partner(connection, partner_id)
            raise NotificationNotFound()
        await _ensure_callback_enabled(connection, partner_id, row["notification_type"])
        if row["status"] == DeliveryStatus.DELIVERING:
            raise Conflict("the notification is being delivered right now")
        subject = [(row["callback_id"], row["subject"])]
        if row["ordered"]:
            await lock_subjects(connection, subject)
        requeued = await connection.fetchval(Q["redeliver"], partner_id, notification_id)
        if requeued is not None and row["ordered"]:
            # Sent on its own now: the next one of its subject, if it waited behind this one,
            # must not wait any longer (nor forever: only an ordered head releases its next).
            log_changes(await release_successors(connection, subject))
        await connection.execute(Q["notify_due"])
        await audit.record(
            connection,
            actor,
            AuditAction.NOTIFICATION_REDELIVERED,
            partner_id,
            row["notification_type"],
            {"notificationId": str(notification_id)},
        )


@retry_on_conflict
async def redeliver_failed(pool: Pool, partner_id: uuid.UUID, since: datetime, actor: Actor) -> int:
    async with pool.acquire() as connection, connection.transaction():
        await ensure_partner(connection, partner_id)
        status = await connection.execute(Q["redeliver_failed"], partner_id, since)
        queued = int(status.split()[-1])
        if queued:
            await connection.execute(Q["notify_due"])
        await audit.record(
            connection,
            actor,
            AuditAction.FAILED_REDELIVERED,
            partner_id,
            details={"since": since.isoformat(), "queued": queued},
        )
    return queued


async def _ensure_callback_enabled(
    connection: asyncpg.Connection, partner_id: uuid.UUID, notification_type: int
) -> None:
    callback = await connection.fetchrow(Q["callback_state"], partner_id, notification_type)
    if callback is None:
        raise CallbackNotFound("the callback for this notification type no longer exists")
    if not callback["enabled"]:
        raise CallbackDisabled()
