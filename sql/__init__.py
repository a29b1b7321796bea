"""The SQL of callbackhub: numbered migrations and named queries, shipped inside the wheel.

Queries live in ``sql/queries/<owner>.sql`` under ``-- name: query_name`` headers. Each file has
one owner module, which loads it with ``load_queries("<owner>")``; a name defined twice, in one
file or across files, is refused when the queries are loaded. The Python code never builds SQL
out of strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME_HEADER = re.compile(r"^--[ \t]*name:[ \t]*(?P<name>\w+)[ \t-]*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")


class DuplicateQuery(ValueError):
    """A query name is defined more than once."""


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


def load_queries(owner: str) -> dict[str, str]:
    """The named queries of ``sql/queries/<owner>.sql``."""
    return _all_queries()[owner]


@cache
def _all_queries() -> dict[str, dict[str, str]]:
    """Every query file's queries, by file; refuses a name that any two places define."""
    by_file: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for entry in sorted(resources.files("sql.queries").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql"):
            owner = entry.name.removesuffix(".sql")
            by_file[owner] = split_named(entry.read_text("utf-8"), owner, seen)
    return by_file


def split_named(text: str, owner: str, seen: dict[str, str] | None = None) -> dict[str, str]:
    """The queries of one file by name; ``seen`` maps names already defined to their file."""
    seen = {} if seen is None else seen
    headers = list(_NAME_HEADER.finditer(text))
    named = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        name = header["name"]
        if name in seen:
            raise DuplicateQuery(f"query {name!r} is defined in {seen[name]}.sql and {owner}.sql")
        seen[name] = owner
        end = following.start() if following else len(text)
        named[name] = text[header.end() : end].strip()
    return named
