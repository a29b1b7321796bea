"""Callback health: its circuit breaker, when a callback stops receiving, and what happens to
what it had pending.

A callback is disabled by its partner (Callback Update with ``enabled: false``), by a 410 Gone,
or after failing without a success for ``CALLBACKHUB_DISABLE_AFTER`` seconds. All three go
through the SQL function ``disable_callbacks_v1``: the dispatcher's write-back
(``finish_attempts_v4``) calls it for the last two, ``disable_callbacks`` here (through
``disable_callbacks_v2``, which adds the operational events) for the first.

The circuit breaker's rules are the dispatcher's (``dispatcher/circuit.py``); the callback's
row records its state, which ``health`` shows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

import sql
from service.core import operator_events
from service.core.changes import Change, changes_from, log_changes
from service.core.database import Pool
from service.core.schemas import CallbackHealth
from service.core.statuses import DisabledReason

Q = sql.load_queries("callback_health")


async def disable_callbacks(
    connection: asyncpg.Connection, callback_ids: list[int], reason: DisabledReason
) -> list[Change]:
    """Disable the callbacks and fail their pending deliveries; the changes made."""
    changes = changes_from(await connection.fetch(Q["disable_callbacks"], callback_ids, reason))
    log_changes(changes)
    operator_events.count(changes)
    return changes


async def fail_stragglers(pool: Pool) -> list[Change]:
    """Fail what an echo stored for a callback while it was being disabled (see the query);
    the changes made. The dispatchers run it every few seconds."""
    changes = changes_from(await pool.fetch(Q["fail_stragglers"], timeout=10))
    log_changes(changes)
    operator_events.count(changes)
    return changes


async def count_disabled(pool: Pool) -> int:
    count: int = await pool.fetchval(Q["disabled_callbacks"], timeout=2)
    return count


async def count_open_circuits(pool: Pool) -> int:
    count: int = await pool.fetchval(Q["open_circuits"], timeout=2)
    return count


def health(row: asyncpg.Record | dict[str, Any], now: datetime | None = None) -> CallbackHealth:
    """A callback's health from its row: an open circuit whose probe is due is probing."""
    state = "healthy"
    if row["circuit_opened_at"] is not None:
        due = row["next_probe_at"] is None or row["next_probe_at"] <= (now or datetime.now(UTC))
        state = "probing" if due else "open"
    paused = row["paused_until"]
    return CallbackHealth(
        state=state,
        consecutive_failures=row["consecutive_failures"],
        failing_since=row["failing_since"],
        next_probe_at=row["next_probe_at"] if state != "healthy" else None,
        paused_until=paused if paused is not None and paused > (now or datetime.now(UTC)) else None,
    )
