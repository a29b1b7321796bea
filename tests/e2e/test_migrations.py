"""The migrations: the schema they build on an empty database, idempotence, and two processes
that start at the same moment against one empty database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

import sql
from service.core.migrations import MIGRATION_LOCK_ID, migrate
from tests.support import postgres
from tests.support.fleet import Fleet
from tests.support.polling import eventually
from tests.support.processes import callbackhub_env, serve
from tests.support.schema import SCHEMA_FILE, migrated_schema

VERSIONS = [migration.version for migration in sql.load_migrations()]
EXPECTED_TABLES = {
    "partners",
    "notification_types",
    "callbacks",
    "notifications",
    "deliveries",
    "delivery_attempts",
    "subject_sequences",
    "idempotency_keys",
    "schema_migrations",
}


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    dsn = await postgres.create_database(server_dsn, template=None)
    yield dsn
    await postgres.drop_database(server_dsn, dsn)


@pytest.fixture
async def connection(empty_database: str) -> AsyncIterator[asyncpg.Connection]:
    connected = await asyncpg.connect(empty_database)
    yield connected
    await connected.close()


async def tables(connection: asyncpg.Connection) -> set[str]:
    rows = await connection.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    )
    return {row["table_name"] for row in rows}


async def schema_fingerprint(connection: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """Every column and constraint of the public schema."""
    columns = await connection.fetch(
        """SELECT table_name, column_name, data_type, is_nullable, column_default
           FROM information_schema.columns WHERE table_schema = 'public'
           ORDER BY table_name, column_name"""
    )
    constraints = await connection.fetch(
        """SELECT conrelid::regclass::text AS owner, conname, pg_get_constraintdef(oid) AS def
           FROM pg_constraint WHERE connamespace = 'public'::regnamespace
           ORDER BY owner, conname"""
    )
    return [tuple(row) for row in columns] + [tuple(row) for row in constraints]


async def test_the_migrations_produce_exactly_the_schema_file(server_dsn: str) -> None:
    built = await migrated_schema(server_dsn)
    assert built == SCHEMA_FILE.read_text(), (
        "sql/schema.sql is not what the migrations build: run `make schema` and review the diff"
    )


async def test_migrations_build_the_schema_on_an_empty_database(
    connection: asyncpg.Connection,
) -> None:
    assert await tables(connection) == set()
    assert await migrate(connection) == VERSIONS
    assert await tables(connection) >= EXPECTED_TABLES

    types = await connection.fetch("SELECT id, name FROM notification_types ORDER BY id")
    assert [tuple(row) for row in types] == [
        (1, "WorkflowStateChange"),
        (2, "Notes"),
        (3, "Document"),
    ]
    recorded = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    assert [tuple(row) for row in recorded] == [(m.version, m.name) for m in sql.load_migrations()]


async def test_callbacks_are_unique_per_partner_and_type(connection: asyncpg.Connection) -> None:
    await migrate(connection)
    unique = await connection.fetch(
        """SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
           WHERE c.conrelid = 'callbacks'::regclass AND c.contype = 'u'
           GROUP BY c.oid"""
    )
    assert ["notification_type", "partner_id"] in [row["columns"] for row in unique]

    partner = await connection.fetchval(
        "INSERT INTO partners (id, name) VALUES (gen_random_uuid(), $1) RETURNING id", "Acme"
    )
    insert = (
        "INSERT INTO callbacks (partner_id, notification_type, url, signing_secret)"
        " VALUES ($1, $2, $3, $4)"
    )
    await connection.execute(insert, partner, 1, "https://example.com/a", "whsec_a")
    await connection.execute(insert, partner, 2, "https://example.com/b", "whsec_b")
    with pytest.raises(asyncpg.UniqueViolationError):
        await connection.execute(insert, partner, 1, "https://example.com/c", "whsec_c")
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await connection.execute(insert, partner, 99, "https://example.com/d", "whsec_d")
    await connection.execute("DELETE FROM partners WHERE id = $1", partner)
    assert await connection.fetchval("SELECT count(*) FROM callbacks") == 0


async def test_migrating_twice_changes_nothing(connection: asyncpg.Connection) -> None:
    await migrate(connection)
    recorded = await connection.fetch("SELECT * FROM schema_migrations ORDER BY version")
    fingerprint = await schema_fingerprint(connection)
    assert await migrate(connection) == []
    assert await connection.fetch("SELECT * FROM schema_migrations ORDER BY version") == recorded
    assert await schema_fingerprint(connection) == fingerprint


async def test_a_failing_migration_leaves_nothing_behind(
    empty_database: str, connection: asyncpg.Connection
) -> None:
    """A migration and its record commit together, and the lock is released when it fails."""
    await connection.execute("CREATE TABLE partners (unrelated integer)")  # in 0001's way
    with pytest.raises(asyncpg.DuplicateTableError):
        await migrate(connection)
    assert await connection.fetchval("SELECT count(*) FROM schema_migrations") == 0
    assert await tables(connection) == {"partners", "schema_migrations"}
    other = await asyncpg.connect(empty_database)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_ID)
    finally:
        await other.close()


async def waiting_for_lock(connection: asyncpg.Connection) -> int:
    """How many sessions wait for the migration lock."""
    count: int = await connection.fetchval(
        """SELECT count(*) FROM pg_locks
           WHERE locktype = 'advisory' AND NOT granted AND objid = $1
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())""",
        MIGRATION_LOCK_ID,
    )
    return count


async def test_two_serve_processes_migrate_one_empty_database_once(
    fleet: Fleet, empty_database: str, connection: asyncpg.Connection
) -> None:
    env = callbackhub_env(empty_database, fleet.logs / "data")
    first = fleet.add(serve("first", env, fleet.logs, dispatcher=False))
    second = fleet.add(serve("second", env, fleet.logs, dispatcher=False))
    # Holding the migration lock makes both processes queue up behind it, so they really
    # contend for the empty database when it is released, however their start-ups interleave.
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    first.spawn()
    second.spawn()
    await eventually(lambda: waiting_for_lock(connection), until=lambda n: n == 2, timeout=60)
    await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    await asyncio.gather(first.wait_ready(), second.wait_ready())

    rows = await connection.fetch(
        "SELECT version, count(*) AS times FROM schema_migrations GROUP BY version ORDER BY 1"
    )
    assert [(row["version"], row["times"]) for row in rows] == [(v, 1) for v in VERSIONS]
    assert await tables(connection) >= EXPECTED_TABLES
    assert await first.terminate() == 0
    assert await second.terminate() == 0
