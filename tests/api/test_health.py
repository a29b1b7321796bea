"""Liveness and readiness against a real database that is migrated, behind, or gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

import sql
from service.api.app import create_app
from tests.support import postgres
from tests.support.settings import make_settings

VERSIONS = [migration.version for migration in sql.load_migrations()]


async def execute(dsn: str, statement: str, *args: Any) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(dsn)
    try:
        return [dict(row) for row in await connection.fetch(statement, *args)]
    finally:
        await connection.close()


async def test_live_is_200_without_a_token(client: TestClient) -> None:
    response = await client.get("/health/live")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_is_200_on_a_migrated_database(client: TestClient) -> None:
    response = await client.get("/health/ready")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_is_503_while_a_migration_is_pending(client: TestClient, database: str) -> None:
    latest = VERSIONS[-1]
    name = sql.load_migrations()[-1].name
    await execute(database, "DELETE FROM schema_migrations WHERE version = $1", latest)
    response = await client.get("/health/ready")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["reason"] == f"migrations pending: [{latest}]"
    assert (await client.get("/health/live")).status == 200

    await execute(
        database, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", latest, name
    )
    assert (await client.get("/health/ready")).status == 200


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    dsn = await postgres.create_database(server_dsn, template=None)
    yield dsn
    await postgres.drop_database(server_dsn, dsn)


async def test_app_on_an_empty_database_migrates_it_before_it_is_ready(
    aiohttp_client: Any, empty_database: str, tmp_path: Path
) -> None:
    assert await execute(empty_database, "SELECT to_regclass('schema_migrations') AS t") == [
        {"t": None}
    ]
    client = await aiohttp_client(create_app(make_settings(tmp_path), empty_database))
    response = await client.get("/health/ready")
    assert response.status == 200
    rows = await execute(empty_database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row["version"] for row in rows] == VERSIONS


async def test_ready_is_503_when_the_database_is_gone(
    client: TestClient, server_dsn: str, database: str
) -> None:
    assert (await client.get("/health/ready")).status == 200
    # Dropping the database (FORCE ends the app's connections) leaves the app with a server
    # that refuses every new connection to it: as unreachable as a database gets, for real.
    await postgres.drop_database(server_dsn, database)
    response = await client.get("/health/ready")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unavailable"
    assert body["reason"].startswith("database unavailable")
    live = await client.get("/health/live")
    assert live.status == 200
