"""Fixtures of the process-level tests: the fleet a test starts (ended when it ends, its logs
shown when it fails) and a PostgreSQL server the test may stop.

Registered for every test by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.support.controlled_postgres import ControlledPostgres
from tests.support.fleet import ControlledDatabase, Fleet
from tests.support.postgres import with_database


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
async def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Fleet]:
    started = Fleet(tmp_path)
    yield started
    for emitter in started.emitters:
        await emitter.abort()
    for process in started.processes:
        process.kill()
    for receiver in [*started.receivers, *started.partners]:
        await receiver.stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(started.log_tails())


@pytest.fixture
async def controlled_database() -> AsyncIterator[ControlledDatabase]:
    """An empty database on a PostgreSQL server of this test's own, which it may stop."""
    folder = Path("/tmp") / f"cbh-cpg-{uuid.uuid4().hex[:8]}"  # short: socket path limit
    server = ControlledPostgres(folder)
    admin = await asyncpg.connect(server.dsn)
    try:
        await admin.execute('CREATE DATABASE "callbackhub"')
    finally:
        await admin.close()
    yield ControlledDatabase(server, with_database(server.dsn, "callbackhub"))
    server.destroy()
