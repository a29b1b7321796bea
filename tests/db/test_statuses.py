"""The SQL's check constraints and service/core/statuses.py list the same closed sets."""

from __future__ import annotations

import re
import uuid
from enum import StrEnum

import asyncpg
import pytest

from service.core.statuses import DeliveryStatus, DisabledReason, FailureReason
from tests.db.rows import Item, add_callback, add_partner, store_one

QUOTED = re.compile(r"'([a-z_]+)'")

CLOSED_SETS: list[tuple[str, str, type[StrEnum]]] = [
    ("deliveries", "status", DeliveryStatus),
    ("deliveries", "failure_reason", FailureReason),
    ("callbacks", "disabled_reason", DisabledReason),
]


async def checked_values(connection: asyncpg.Connection, table: str, column: str) -> set[str]:
    """The values the table's check constraints on exactly this column allow."""
    rows = await connection.fetch(
        """SELECT c.conname, pg_get_constraintdef(c.oid) AS definition
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
           WHERE c.conrelid = $1::text::regclass AND c.contype = 'c' AND a.attname = $2
             AND cardinality(c.conkey) = 1""",
        table,
        column,
    )
    assert len(rows) == 1, [tuple(row) for row in rows]
    return set(QUOTED.findall(rows[0]["definition"]))


@pytest.mark.parametrize(("table", "column", "enum"), CLOSED_SETS)
async def test_the_check_constraint_lists_the_enum(
    connection: asyncpg.Connection, table: str, column: str, enum: type[StrEnum]
) -> None:
    assert await checked_values(connection, table, column) == {member.value for member in enum}


async def a_row(connection: asyncpg.Connection, table: str) -> object:
    """The key of one row of the table: a partner's callback and one delivery of it."""
    partner = await add_partner(connection)
    callback_id = await add_callback(connection, partner)
    notification = await store_one(connection, Item(partner, uuid.uuid4()))
    return notification if table == "deliveries" else callback_id


UPDATES = {
    ("deliveries", "status"): "UPDATE deliveries SET status = $1 WHERE notification_id = $2",
    ("deliveries", "failure_reason"): (
        "UPDATE deliveries SET failure_reason = $1 WHERE notification_id = $2"
    ),
    ("callbacks", "disabled_reason"): "UPDATE callbacks SET disabled_reason = $1 WHERE id = $2",
}


@pytest.mark.parametrize(
    ("table", "column", "unknown"),
    [
        ("deliveries", "status", "retrying"),
        ("deliveries", "failure_reason", "http_500"),
        ("callbacks", "disabled_reason", "deleted"),
    ],
)
async def test_an_unknown_value_is_refused(
    connection: asyncpg.Connection, table: str, column: str, unknown: str
) -> None:
    key = await a_row(connection, table)

    with pytest.raises(asyncpg.CheckViolationError):
        await connection.execute(UPDATES[table, column], unknown, key)


@pytest.mark.parametrize(("table", "column", "enum"), CLOSED_SETS)
async def test_every_enum_value_is_accepted(
    connection: asyncpg.Connection, table: str, column: str, enum: type[StrEnum]
) -> None:
    key = await a_row(connection, table)

    for member in enum:
        assert await connection.execute(UPDATES[table, column], member.value, key) == "UPDATE 1"
