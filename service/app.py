"""The aiohttp application: routes, middleware, and the resources it opens and closes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from service import views  # noqa: F401 - importing the views fills the route table
from service.auth import TokenVerifier
from service.database import create_pool, migrate
from service.endpoints import ENDPOINTS
from service.ingest import Ingest
from service.keys import DSN, INGEST, POOL, SETTINGS, VERIFIER
from service.metrics import count_requests
from service.problems import problem_middleware
from service.settings import Settings
from service.views import docs

log = logging.getLogger(__name__)


def create_app(settings: Settings, dsn: str, *, with_dispatcher: bool = False) -> web.Application:
    """The API. With ``with_dispatcher`` the same process also delivers notifications."""
    app = web.Application(
        middlewares=[count_requests, problem_middleware], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[DSN] = dsn
    app[VERIFIER] = TokenVerifier(settings)
    # aiohttp tries the routes under one prefix (/partners) in the order they were added: the
    # echo, the hot path, goes first (no other route can match its path).
    for item in sorted(ENDPOINTS, key=lambda e: not e.path.endswith("/echo")):
        app.router.add_route(item.method, item.path, item.handler)
    docs.add_routes(app)
    app.cleanup_ctx.append(_database)
    if with_dispatcher:
        from dispatcher.worker import dispatcher_context

        app.cleanup_ctx.append(dispatcher_context)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(app[DSN], settings)
    async with pool.acquire() as connection:
        await migrate(connection)
    app[POOL] = pool
    app[INGEST] = Ingest(pool, settings.idempotency_ttl, settings.ingest_writers)
    yield
    await app[INGEST].close()
    await pool.close()
