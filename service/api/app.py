"""The aiohttp application of the API: routes, middleware, and the resources it opens and
closes. A process that also delivers adds the dispatcher's context (``service.server``)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from service.api import views  # noqa: F401 - importing the views fills the route table
from service.api.app_keys import DSN, KEYRING, NOTIFICATION_WRITER, POOL, SETTINGS, VERIFIER
from service.api.problems import problem_middleware
from service.api.request_ids import assign_request_id
from service.api.request_metrics import count_requests
from service.api.request_spans import trace_requests
from service.api.routes import ROUTES
from service.api.tokens import TokenVerifier
from service.api.views import docs
from service.core import tracing
from service.core.database import create_pool
from service.core.encryption import load_keyring
from service.core.migrations import migrate
from service.core.notifications import NotificationWriter
from service.core.settings import Settings
from service.core.stored_secrets import prepare_stored_secrets

log = logging.getLogger(__name__)


def create_app(settings: Settings, dsn: str) -> web.Application:
    """The API; the settings must name encryption keys (``ensure_encryption_keys``)."""
    middlewares = [assign_request_id, count_requests, problem_middleware]
    if tracing.enabled():  # no cost at all while tracing is off
        middlewares.insert(1, trace_requests)
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[KEYRING] = load_keyring(settings)
    app[DSN] = dsn
    app[VERIFIER] = TokenVerifier(settings)
    # aiohttp tries the routes under one prefix (/partners) in the order they were added: the
    # echo, the hot path, goes first (no other route can match its path).
    for item in sorted(ROUTES, key=lambda r: not r.path.endswith("/echo")):
        app.router.add_route(item.method, item.path, item.handler())
    docs.add_routes(app)
    app.cleanup_ctx.append(_database)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    pool = await create_pool(app[DSN], settings)
    try:
        async with pool.acquire() as connection:
            await migrate(connection)
        await prepare_stored_secrets(pool, app[KEYRING])
    except BaseException:
        await pool.close()
        raise
    app[POOL] = pool
    app[NOTIFICATION_WRITER] = NotificationWriter(
        pool, settings.idempotency_ttl, settings.notification_writers
    )
    yield
    await app[NOTIFICATION_WRITER].close()
    await pool.close()
