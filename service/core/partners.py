"""Partners: the brokers and intermediaries who receive callbacks."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

import sql
from service.core import audit
from service.core.audit import Actor, AuditAction
from service.core.database import Pool, retry_on_conflict
from service.core.errors import PartnerExists, PartnerNotFound
from service.core.ordering import lock_partner_subjects
from service.core.schemas import Partner, PartnerPage

Q = sql.load_queries("partners")


def _partner(row: asyncpg.Record | dict[str, Any]) -> Partner:
    return Partner(partner_unique_id=row["id"], name=row["name"], created_at=row["created_at"])


async def create_partner(
    pool: Pool, name: str, partner_id: uuid.UUID | None, actor: Actor
) -> Partner:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(Q["insert_partner"], partner_id or uuid.uuid4(), name)
        if row is None:
            raise PartnerExists()
        await audit.record(
            connection, actor, AuditAction.PARTNER_CREATED, row["id"], details={"name": name}
        )
    return _partner(row)


async def get_partner(pool: Pool, partner_id: uuid.UUID) -> Partner:
    row = await pool.fetchrow(Q["get_partner"], partner_id)
    if row is None:
        raise PartnerNotFound()
    return _partner(row)


async def ensure_partner(connection: asyncpg.Connection | Pool, partner_id: uuid.UUID) -> None:
    if not await connection.fetchval(Q["partner_exists"], partner_id):
        raise PartnerNotFound()


async def list_partners(pool: Pool, offset: int, limit: int) -> PartnerPage:
    rows = await pool.fetch(Q["list_partners"], offset, limit)
    total = rows[0]["total"] if rows else await pool.fetchval(Q["count_partners"])
    return PartnerPage(items=[_partner(r) for r in rows], offset=offset, limit=limit, total=total)


@retry_on_conflict
async def delete_partner(pool: Pool, partner_id: uuid.UUID, actor: Actor) -> None:
    """Delete the partner and its callbacks; its pending notifications are cancelled."""
    async with pool.acquire() as connection, connection.transaction():
        await lock_partner_subjects(connection, partner_id)
        await connection.execute(Q["cancel_partner_deliveries"], partner_id)
        name = await connection.fetchval(Q["delete_partner"], partner_id)
        if name is None:
            raise PartnerNotFound()
        await audit.record(
            connection, actor, AuditAction.PARTNER_DELETED, partner_id, details={"name": name}
        )
