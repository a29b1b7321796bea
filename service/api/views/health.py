"""Liveness and readiness, for load balancers and orchestrators."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service.api.app_keys import POOL
from service.api.auth import Caller
from service.api.routes import route
from service.core.database import DATABASE_DOWN
from service.core.migrations import pending_migrations
from service.core.schemas import HealthStatus


@route(
    "GET",
    "/health/live",
    summary="200 while the process runs",
    tag="health",
    authenticated=False,
    response=HealthStatus,
)
async def live(request: web.Request, caller: Caller) -> web.Response:
    return web.json_response(HealthStatus(status="ok").dump(exclude_none=True))


@route(
    "GET",
    "/health/ready",
    summary="200 when the database answers and is migrated, else 503",
    tag="health",
    authenticated=False,
    response=HealthStatus,
    extra_statuses={503: "Not ready; the body says why"},
)
async def ready(request: web.Request, caller: Caller) -> web.Response:
    try:
        async with request.app[POOL].acquire(timeout=2) as connection:
            pending = await pending_migrations(connection)  # also proves the database answers
    except (*DATABASE_DOWN, asyncpg.PostgresError) as error:
        # Any server error here (say, the database was dropped) means "not ready", not a 500.
        return _not_ready(f"database unavailable: {type(error).__name__}")
    if pending:
        return _not_ready(f"migrations pending: {pending}")
    return web.json_response(HealthStatus(status="ok").dump(exclude_none=True))


def _not_ready(reason: str) -> web.Response:
    return web.json_response(HealthStatus(status="unavailable", reason=reason).dump(), status=503)
