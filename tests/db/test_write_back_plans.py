"""The write-back finds each attempt's row by its notification id whatever the statistics say
(0013). Statistics taken while nothing was being delivered estimate a single 'delivering' row;
the planner then walked every delivering row and compared it with every finished attempt
(a "Join Filter" on the id): with deliveries claimed ahead, thousands x hundreds per write-back.

The plans are read as PostgreSQL runs them, nested in the SQL functions, through auto_explain
(a module shipped with PostgreSQL) sending them to this connection."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.db.rows import (
    NOTES,
    QUEUE,
    Attempt,
    Item,
    add_callback,
    add_partner,
    claim,
    finish,
    store,
)

HISTORY = 20_000  # delivered notifications
CLAIMED = 600  # delivering at once, as claim-ahead holds them
FINISHED = 300  # one write-back's attempts


@contextlib.asynccontextmanager
async def explained(connection: asyncpg.Connection) -> AsyncIterator[list[str]]:
    """The plans of the statements run inside the block, nested ones included."""
    try:
        await connection.execute("LOAD 'auto_explain'")
    except asyncpg.InsufficientPrivilegeError:
        pytest.skip("LOAD needs a superuser (a server named by CALLBACKHUB_TEST_DATABASE_URL)")
    await connection.execute(
        "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
        " SET auto_explain.log_analyze = on; SET client_min_messages = log"
    )
    plans: list[str] = []

    def collect(_: asyncpg.Connection, message: asyncpg.PostgresLogMessage) -> None:
        plans.append(str(message))

    connection.add_log_listener(collect)
    try:
        yield plans
    finally:
        connection.remove_log_listener(collect)
        await connection.execute("RESET client_min_messages; RESET auto_explain.log_min_duration")


async def claimed_after_stale_statistics(connection: asyncpg.Connection) -> list[uuid.UUID]:
    """``CLAIMED`` deliveries claimed at once, in a table of delivered history whose statistics
    were taken before any of them was delivering."""
    partner = await add_partner(connection)
    history = await add_callback(connection, partner, NOTES)
    await store(connection, [Item(partner, uuid.uuid4(), NOTES) for _ in range(HISTORY)])
    await connection.execute(
        "UPDATE deliveries SET status = 'delivered', finished_at = now() WHERE callback_id = $1",
        history,
    )
    await add_callback(connection, partner)
    await store(connection, [Item(partner, uuid.uuid4()) for _ in range(CLAIMED)])
    await connection.execute("ANALYZE deliveries")  # nothing delivering: it looks rare
    claimed = await claim(connection, total=CLAIMED)
    assert len(claimed) == CLAIMED
    return [row["notification_id"] for row in claimed]


def updates_of_deliveries(plans: list[str]) -> list[str]:
    return [plan for plan in plans if "Update on deliveries" in plan]


async def test_the_write_back_never_compares_every_delivering_row_with_every_attempt(
    connection: asyncpg.Connection,
) -> None:
    ids = await claimed_after_stale_statistics(connection)

    async with explained(connection) as plans:
        await finish(connection, [Attempt(n, 1, "delivered") for n in ids[:FINISHED]])

    [update] = [plan for plan in updates_of_deliveries(plans) if "WITH finished AS" in plan]
    assert "Join Filter" not in update, update
    delivered = await connection.fetchval(
        "SELECT count(*) FROM deliveries WHERE status = 'delivered' AND notification_id = ANY ($1)",
        ids,
    )
    assert delivered == FINISHED


@pytest.mark.parametrize("query", ["renew_lanes", "release_leases"])
async def test_renewing_and_releasing_find_the_rows_by_id(
    connection: asyncpg.Connection, query: str
) -> None:
    ids = await claimed_after_stale_statistics(connection)
    if query == "renew_lanes":
        args: tuple[object, ...] = ("worker-a", 60.0, [], ids[:FINISHED], [])
    else:
        args = (ids[:FINISHED], "worker-a", [])

    async with explained(connection) as plans:
        await connection.execute(QUEUE[query], *args)

    [update] = updates_of_deliveries(plans)
    assert "Index Cond: (notification_id = ANY" in update, update
