"""Migrations: apply the numbered files of ``sql/migrations`` once each, in order."""

from __future__ import annotations

import logging

import asyncpg

import sql

log = logging.getLogger(__name__)
Q = sql.load_queries("migrations")

# Any constant works; it only has to be the same in every callbackhub process.
MIGRATION_LOCK_ID = 0x63616C6C  # "call"


async def migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply pending migrations, each in its own transaction, under an advisory lock.

    The lock makes a second process that starts at the same moment wait, then find nothing
    left to do.
    """
    applied_now: list[int] = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await connection.fetch(Q["applied_migrations"])}
        for migration in sql.load_migrations():
            if migration.version in done:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(Q["record_migration"], migration.version, migration.name)
            log.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration.version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def pending_migrations(connection: asyncpg.Connection) -> list[int]:
    """Versions shipped with this build that the database has not applied yet."""
    exists = await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {row["version"] for row in await connection.fetch(Q["applied_migrations"])}
    return [m.version for m in sql.load_migrations() if m.version not in done]
