"""A digest of everything the service stores, to prove that a refused request changed nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
_TABLES = """
    SELECT table_name FROM information_schema.tables
    WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> $1
    ORDER BY table_name
"""


async def snapshot(connection: asyncpg.Connection) -> dict[str, str]:
    """Table name -> md5 of all its rows in a stable order (migration bookkeeping excluded)."""
    tables = [row["table_name"] for row in await connection.fetch(_TABLES, "schema_migrations")]
    digests: dict[str, str] = {}
    for table in tables:
        assert _IDENTIFIER.fullmatch(table), table
        digests[table] = await connection.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) "  # noqa: S608
            f'FROM "{table}" t'
        )
    return digests


async def snapshot_of(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        return await snapshot(connection)
    finally:
        await connection.close()


Digest = Callable[[], Awaitable[dict[str, str]]]


@asynccontextmanager
async def digests(dsn: str) -> AsyncIterator[Digest]:
    """A snapshot function on one connection held open, for tests that take many snapshots."""
    connection = await asyncpg.connect(dsn)
    try:
        yield lambda: snapshot(connection)
    finally:
        await connection.close()


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )
