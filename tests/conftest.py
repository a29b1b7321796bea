"""Shared fixtures: a real PostgreSQL per test, the app, tokens, and partners' receivers."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.api.app import create_app
from service.api.tokens import mint_token
from service.core.settings import Settings
from service.server import build_app
from tests.support import postgres
from tests.support.receiver import Receiver

JWT_SECRET = "test-secret-with-enough-entropy-for-hs256-0123456789"


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


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "jwt_secret": JWT_SECRET,
        "retry_schedule": (0.05, 0.05, 0.05),
        "retry_jitter": 0.0,
        "delivery_timeout": 2.0,
        "lease_margin": 2.0,
        "poll_interval": 0.2,
        "shutdown_grace": 2.0,
        "allowed_networks": (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "database_pool_min": 1,
        "database_pool_max": 5,
    }
    values.update(overrides)
    return Settings(**values)


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


def token(
    scopes: str = "partners:admin", partner: uuid.UUID | str | None = None, ttl: int = 600
) -> str:
    settings = Settings(jwt_secret=JWT_SECRET)
    partner_id = uuid.UUID(str(partner)) if partner else None
    return mint_token(settings, scopes.split(), partner_id, ttl)


def auth(scopes: str = "partners:admin", partner: uuid.UUID | str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(scopes, partner)}"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = await Receiver().start()
    yield started
    await started.stop()


@pytest.fixture
async def partner(client: TestClient) -> str:
    """A registered partner's id."""
    response = await client.post("/partners", json={"name": "Acme Brokers"}, headers=auth())
    assert response.status == 201
    body = await response.json()
    return str(body["partnerUniqueId"])
