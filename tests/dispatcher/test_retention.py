"""Retention deletes finished notifications past the retention period, and nothing else."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from dispatcher.retention import purge_once
from service.api.app_keys import POOL
from service.core.settings import Settings
from tests.support.api import emit, put_callback

NOTE = {
    "processUniqueId": "8e6a1a8c-56b6-4b0e-9d3a-3f0c2f0e9d11",
    "noteUniqueId": "0b5c1d5e-7d1e-4f5e-8c1d-2a3b4c5d6e7f",
    "subject": "s",
    "text": "t",
    "createdAt": "2026-01-01T00:00:00Z",
}


async def test_purges_only_old_finished_notifications(
    client: TestClient, partner: str, database: str, settings: Settings
) -> None:
    await put_callback(client, partner, 2, "https://example.com/hook")
    old_delivered, old_failed, recent, pending = [
        await emit(client, partner, 2, NOTE) for _ in range(4)
    ]
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            """UPDATE deliveries SET status = CASE WHEN notification_id = $1 THEN 'delivered'
                                               ELSE 'failed' END,
                                     finished_at = now() - interval '31 days'
               WHERE notification_id = ANY($2::uuid[])""",
            old_delivered,
            [old_delivered, old_failed],
        )
        await connection.execute(
            "UPDATE deliveries SET status = 'delivered', finished_at = now() - interval '29 days'"
            " WHERE notification_id = $1",
            recent,
        )
        await connection.execute(
            "INSERT INTO delivery_attempts VALUES ($1, 1, now(), 5, 500, 'x', NULL)", old_failed
        )
        deleted = await purge_once(client.app[POOL], settings)
        remaining = {str(r["id"]) for r in await connection.fetch("SELECT id FROM notifications")}
        attempts = await connection.fetchval("SELECT count(*) FROM delivery_attempts")
    finally:
        await connection.close()
    assert deleted == 2
    assert remaining == {recent, pending}
    assert attempts == 0
