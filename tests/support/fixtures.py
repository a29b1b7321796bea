"""The suite's fixtures: a real PostgreSQL per test, the app, partners' receivers.

Registered for every test by ``tests/conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.abc import AbstractResolver
from aiohttp.test_utils import TestClient

from dispatcher.worker import Dispatcher
from service.api.app import create_app
from service.core.settings import Settings
from service.server import build_app
from tests.support import postgres
from tests.support.api import create_partner
from tests.support.receiver import Receiver
from tests.support.settings import make_settings


@pytest.fixture(scope="session")
def server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = Path("/tmp") / f"cbh-pg-{uuid.uuid4().hex[:8]}"  # short: socket path limit
    dsn = postgres.start_server(folder)
    postgres.create_template(dsn)
    yield dsn


@pytest.fixture
async def database(server_dsn: str) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database for this test alone."""
    dsn = await postgres.create_database(server_dsn)
    yield dsn
    await postgres.drop_database(server_dsn, dsn)


@pytest.fixture
async def connection(database: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to this test's database (no custom codecs)."""
    connected = await asyncpg.connect(database)
    yield connected
    await connected.close()


@pytest.fixture
def settings(tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Test settings; a test changes some with ``@pytest.mark.parametrize("settings",
    [{...overrides}], indirect=True)``."""
    return make_settings(tmp_path, **getattr(request, "param", {}))


@pytest.fixture
async def client(database: str, settings: Settings, aiohttp_client: Any) -> TestClient:
    """The API only (no dispatcher). ``database`` comes first so it is dropped last."""
    return await aiohttp_client(create_app(settings, database))


@pytest.fixture
async def client_with_dispatcher(
    database: str, settings: Settings, aiohttp_client: Any
) -> TestClient:
    """The API and a dispatcher in one app, as ``callbackhub serve`` runs them. ``database``
    comes first so it is dropped only after the app (and its dispatcher) has shut down."""
    return await aiohttp_client(build_app(settings, database, with_dispatcher=True))


StartDispatcher = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def dispatch(database: str, tmp_path: Path) -> AsyncIterator[StartDispatcher]:
    """Start a dispatcher of its own on the test's database, with settings overrides (and a
    DNS), for tests whose API (``client``) runs without one; stopped at the end."""
    started: list[Dispatcher] = []

    async def start(dns: AbstractResolver | None = None, **overrides: Any) -> Dispatcher:
        dispatcher = Dispatcher(make_settings(tmp_path, **overrides), database, dns)
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        await dispatcher.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


@pytest.fixture
async def partner(client: TestClient) -> str:
    """A registered partner's id."""
    return await create_partner(client)
