"""Operational events: what the platform team hears about partners' callbacks.

Every event is written by the transaction of the change that causes it, so an event is never
lost and never sent for a change that rolled back. The SQL write functions record the events of
what the dispatcher changes (``finish_attempts_v4``, ``disable_callbacks_v2``); the API's domain
functions call ``emit`` for what a person or a program changed. An event is queued for the
operator webhook when the webhook is enabled and subscribes to its type; the dispatcher delivers
it like a notification (signed, retried on the schedule, with an attempt log).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, get_args

import asyncpg

import sql
from service.core import audit
from service.core.audit import Actor, AuditAction
from service.core.changes import Change, ChangeKind, changes_from
from service.core.database import Pool
from service.core.errors import Conflict, NotFound
from service.core.metrics import OPERATOR_EVENTS
from service.core.schemas import (
    OperatorEvent,
    OperatorEventAttempt,
    OperatorEventFilter,
    OperatorEventPage,
    OperatorEventType,
)

Q = sql.load_queries("operator_events")
EVENT_TYPES: tuple[str, ...] = get_args(OperatorEventType)


def api_time(moment: datetime) -> str:
    """A time in an event as the SQL's api_time writes it: RFC 3339, UTC, microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OperatorEventNotFound(NotFound):
    """No such operator event."""


async def emit(
    connection: asyncpg.Connection,
    event_type: OperatorEventType,
    partner_id: uuid.UUID,
    notification_type: int,
    data: Mapping[str, Any],
) -> None:
    """Record one event about a callback; call it inside the change's transaction."""
    body = {"partnerUniqueId": str(partner_id), "notificationType": notification_type} | dict(data)
    rows = await connection.fetch(Q["record_operator_events"], [event_type], [body])
    count(changes_from(rows))


def count(changes: Iterable[Change]) -> None:
    """Count the events among the changes a write function reported, by type."""
    for change in changes:
        if change.kind is ChangeKind.OPERATOR_EVENT and change.reason is not None:
            OPERATOR_EVENTS.labels(change.reason).inc()


async def list_events(pool: Pool, wanted: OperatorEventFilter) -> OperatorEventPage:
    """Newest first, with each event's attempts."""
    args = (wanted.type, wanted.status)
    rows = await pool.fetch(Q["list_operator_events"], *args, wanted.offset, wanted.limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_operator_events"], *args)
    items = await _with_attempts(pool, rows)
    return OperatorEventPage(items=items, offset=wanted.offset, limit=wanted.limit, total=total)


async def get_event(pool: Pool, event_id: uuid.UUID) -> OperatorEvent:
    row = await pool.fetchrow(Q["get_operator_event"], event_id)
    if row is None:
        raise OperatorEventNotFound()
    return (await _with_attempts(pool, [row]))[0]


async def redeliver(pool: Pool, event_id: uuid.UUID, actor: Actor) -> OperatorEvent:
    """Queue a finished event again with a fresh round of attempts (the same webhook-id)."""
    async with pool.acquire() as connection, connection.transaction():
        queued = await connection.fetchval(Q["redeliver_operator_event"], event_id)
        if queued is None:
            if await connection.fetchrow(Q["get_operator_event"], event_id) is None:
                raise OperatorEventNotFound()
            raise Conflict("the event is still queued or being delivered")
        await audit.record(
            connection,
            actor,
            AuditAction.OPERATOR_EVENT_REDELIVERED,
            details={"eventId": str(event_id)},
        )
    return await get_event(pool, event_id)


async def _with_attempts(pool: Pool, rows: list[asyncpg.Record]) -> list[OperatorEvent]:
    attempts: dict[uuid.UUID, list[OperatorEventAttempt]] = {row["id"]: [] for row in rows}
    if rows:
        for a in await pool.fetch(Q["operator_event_attempts"], list(attempts)):
            fields = {k: v for k, v in a.items() if k != "event_id"}
            attempts[a["event_id"]].append(OperatorEventAttempt.model_validate(fields))
    return [
        OperatorEvent.model_validate(
            {k: v for k, v in row.items() if k != "total"} | {"attempt_log": attempts[row["id"]]}
        )
        for row in rows
    ]
