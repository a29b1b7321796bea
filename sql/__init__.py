"""The SQL of callbackhub: numbered migrations and named queries, shipped inside the wheel.

Queries live in ``sql/queries/*.sql`` under ``-- name: query_name`` headers and are loaded once
into a dict, so the Python code never builds SQL out of strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME_HEADER = re.compile(r"^--[ \t]*name:[ \t]*(?P<name>\w+)[ \t-]*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def load_migrations() -> tuple[Migration, ...]:
    """Every migration, in the order it must be applied."""
    found = []
    for entry in resources.files("sql.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text("utf-8")))
    return tuple(sorted(found, key=lambda migration: migration.version))


@cache
def load_queries() -> dict[str, str]:
    """All named queries, by name."""
    loaded: dict[str, str] = {}
    for entry in resources.files("sql.queries").iterdir():
        if entry.name.endswith(".sql"):
            loaded.update(_split_named(entry.read_text("utf-8")))
    return loaded


def _split_named(text: str) -> dict[str, str]:
    headers = list(_NAME_HEADER.finditer(text))
    named = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following else len(text)
        named[header["name"]] = text[header.end() : end].strip()
    return named
