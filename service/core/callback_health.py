"""Callback health: when a callback stops receiving, and what happens to what it had pending.

A callback is disabled by its partner (Callback Update with ``enabled: false``), by a 410 Gone,
or after failing without a success for ``CALLBACKHUB_DISABLE_AFTER`` seconds. All three go
through the SQL function ``disable_callbacks_v1``: the dispatcher's write-back
(``finish_attempts_v2``) calls it for the last two, ``disable_callbacks`` here for the first.
"""

from __future__ import annotations

import asyncpg

import sql
from service.core.changes import Change, changes_from, log_changes
from service.core.database import Pool
from service.core.statuses import DisabledReason

Q = sql.load_queries("callback_health")


async def disable_callbacks(
    connection: asyncpg.Connection, callback_ids: list[int], reason: DisabledReason
) -> list[Change]:
    """Disable the callbacks and fail their pending deliveries; the changes made."""
    changes = changes_from(await connection.fetch(Q["disable_callbacks"], callback_ids, reason))
    log_changes(changes)
    return changes


async def count_disabled(pool: Pool) -> int:
    count: int = await pool.fetchval(Q["disabled_callbacks"], timeout=2)
    return count
