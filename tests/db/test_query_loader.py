"""The query loader refuses a name defined twice, and every named query prepares against the
migrated schema (which catches SQL calling a dropped or renamed function)."""

from __future__ import annotations

from importlib import resources

import asyncpg
import pytest

import sql

OWNERS = sorted(
    entry.name.removesuffix(".sql")
    for entry in resources.files("sql.queries").iterdir()
    if entry.name.endswith(".sql")
)


def test_split_named_returns_each_query_by_name() -> None:
    text = "-- name: first\nSELECT 1;\n\n-- name: second --\n-- a comment\nSELECT 2;\n"

    assert sql.split_named(text, "things") == {
        "first": "SELECT 1;",
        "second": "-- a comment\nSELECT 2;",
    }


def test_a_name_defined_twice_in_one_file_is_refused() -> None:
    text = "-- name: twice\nSELECT 1;\n-- name: twice\nSELECT 2;\n"

    with pytest.raises(
        sql.DuplicateQuery, match=r"'twice' is defined in things\.sql and things\.sql"
    ):
        sql.split_named(text, "things")


def test_a_name_defined_in_two_files_is_refused_naming_both() -> None:
    seen: dict[str, str] = {}
    sql.split_named("-- name: shared\nSELECT 1;\n-- name: own\nSELECT 2;\n", "first", seen)
    assert seen == {"shared": "first", "own": "first"}

    with pytest.raises(
        sql.DuplicateQuery, match=r"'shared' is defined in first\.sql and second\.sql"
    ):
        sql.split_named("-- name: other\nSELECT 3;\n-- name: shared\nSELECT 4;\n", "second", seen)


def test_the_query_files_are_all_found() -> None:
    assert {"queue", "notifications", "callback_health", "callbacks"} <= set(OWNERS)


@pytest.mark.parametrize("owner", OWNERS)
async def test_every_query_of_the_file_prepares(connection: asyncpg.Connection, owner: str) -> None:
    queries = sql.load_queries(owner)
    assert queries, f"{owner}.sql defines no query"

    for name, query in queries.items():
        assert query, f"{owner}.sql: {name} is empty"
        try:
            await connection.prepare(query)
        except asyncpg.PostgresError as error:
            pytest.fail(f"{owner}.sql: {name} does not prepare: {error!r}")
