"""How a partner's callbacks are doing: per callback over the last 24 hours, per hour for the
chart, and every partner at a glance for the operator."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sql
from service.core.database import Pool

Q = sql.load_queries("delivery_stats")
HOURS = 24


@dataclass(frozen=True)
class CallbackOverview:
    notification_type: int
    url: str
    enabled: bool
    disabled_reason: str | None
    ordered_delivery: bool
    failing_since: datetime | None
    circuit_open: bool
    last_attempt_at: datetime | None
    last_status: str | None
    deliveries_24h: int
    failures_24h: int


@dataclass(frozen=True)
class HourOutcomes:
    hour: datetime
    delivered: int
    failed: int


@dataclass(frozen=True)
class PartnerHealth:
    partner_id: uuid.UUID
    name: str
    callbacks: int
    disabled: int
    failing: int
    failed_24h: int


async def callback_overview(pool: Pool, partner_id: uuid.UUID) -> dict[int, CallbackOverview]:
    rows = await pool.fetch(Q["callback_overview"], partner_id)
    return {row["notification_type"]: CallbackOverview(**dict(row)) for row in rows}


async def hourly_outcomes(pool: Pool, partner_id: uuid.UUID) -> list[HourOutcomes]:
    """Exactly 24 hours, oldest first, the current hour last; hours without any are zeros."""
    rows = {row["hour"]: row for row in await pool.fetch(Q["hourly_outcomes"], partner_id)}
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=back) for back in range(HOURS - 1, -1, -1)]
    return [
        HourOutcomes(hour, rows[hour]["delivered"], rows[hour]["failed"])
        if hour in rows
        else HourOutcomes(hour, 0, 0)
        for hour in hours
    ]


async def partner_health(pool: Pool, offset: int, limit: int) -> tuple[list[PartnerHealth], int]:
    rows = await pool.fetch(Q["partner_health"], offset, limit)
    total = rows[0]["total"] if rows else 0
    items = [
        PartnerHealth(
            row["id"],
            row["name"],
            row["callbacks"],
            row["disabled"],
            row["failing"],
            row["failed_24h"],
        )
        for row in rows
    ]
    return items, total
