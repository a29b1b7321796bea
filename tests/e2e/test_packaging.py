"""The package builds as a normal wheel that holds the code, the migrations and the queries,
and runs from the wheel alone (not from this source tree)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.support import postgres
from tests.support.keys import ENCRYPTION_KEYS

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("service", "dispatcher", "sql")
# What a clean clone holds for the build; copied so the build writes nothing into the checkout.
PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "setup.cfg")


def source_files(pattern: str, *folders: str) -> set[str]:
    return {
        path.relative_to(ROOT).as_posix()
        for folder in folders
        for path in (ROOT / folder).rglob(pattern)
        if "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "out"), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = (work / "out").glob("callbackhub-*.whl")
    return found


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_the_migrations_and_queries(wheel: Path) -> None:
    contents = names(wheel)
    migrations = source_files("*.sql", "sql/migrations")
    queries = source_files("*.sql", "sql/queries")
    assert migrations and queries
    assert migrations <= contents
    assert queries <= contents


def test_wheel_holds_every_module_of_service_and_dispatcher(wheel: Path) -> None:
    modules = source_files("*.py", "service", "dispatcher", "sql")
    assert "service/api/views/callbacks.py" in modules
    assert "service/core/callbacks.py" in modules
    assert modules - names(wheel) == set()
    assert {"service/py.typed", "dispatcher/py.typed"} <= names(wheel)


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [n for n in archive.namelist() if n.endswith("entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "callbackhub = service.cli:main" in text


@pytest.fixture
async def empty_database(server_dsn: str) -> AsyncIterator[str]:
    dsn = await postgres.create_database(server_dsn, template=None)
    yield dsn
    await postgres.drop_database(server_dsn, dsn)


async def test_migrate_runs_from_the_wheel_alone(
    wheel: Path, tmp_path: Path, empty_database: str
) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKHUB_")}
    env.update(
        PYTHONPATH=str(unpacked),
        CALLBACKHUB_DATABASE_URL=empty_database,
        CALLBACKHUB_ENCRYPTION_KEYS=ENCRYPTION_KEYS,
    )
    probe = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import service.api.app, service.cli, sql; print(service.__file__)",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(probe.communicate(), 60)
    assert probe.returncode == 0, err.decode()
    assert Path(out.decode().strip()).is_relative_to(unpacked)

    migrate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "migrate",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(migrate.communicate(), 60)
    assert migrate.returncode == 0, err.decode()
    assert out.decode().startswith("applied ")
    connection = await asyncpg.connect(empty_database)
    try:
        types = await connection.fetchval("SELECT count(*) FROM notification_types")
    finally:
        await connection.close()
    assert types == 3
