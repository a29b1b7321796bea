"""Retention: finished notifications and operational events older than
CALLBACKHUB_RETENTION_DAYS, and audit records older than CALLBACKHUB_AUDIT_RETENTION_DAYS, are
deleted in small batches, so the tables stay the size of the recent past without long locks."""

from __future__ import annotations

import asyncio
import logging

import sql
from service.core import audit
from service.core.database import DATABASE_DOWN, Pool
from service.core.settings import Settings

log = logging.getLogger(__name__)
Q = sql.load_queries("retention")
BATCH = 1000


async def purge_once(pool: Pool, settings: Settings) -> int:
    """Delete everything that is past retention, one batch per statement; return the count."""
    total = 0
    while True:
        status = await pool.execute(Q["purge_finished"], settings.retention_days, BATCH)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < BATCH:
            break
        await asyncio.sleep(0)  # let the hot paths in between batches
    await pool.execute(Q["purge_idempotency_keys"], settings.idempotency_ttl, BATCH * 10)
    await pool.execute(Q["purge_operator_events"], settings.retention_days, BATCH * 10)
    await audit.expire(pool, settings.audit_retention_days, BATCH * 10)
    return total


async def purge_forever(pool: Pool, settings: Settings) -> None:
    while True:
        try:
            deleted = await purge_once(pool, settings)
            if deleted:
                log.info("retention: deleted %d finished notifications", deleted)
        except DATABASE_DOWN as error:
            log.warning("retention skipped: %s", type(error).__name__)
        await asyncio.sleep(settings.retention_interval)
