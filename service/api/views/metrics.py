"""``GET /metrics``: Prometheus text format. Queue gauges are read from the database when
scraped, so every process reports the same shared queue."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.app_keys import POOL
from service.api.auth import Caller
from service.api.routes import route
from service.core.callback_health import count_disabled, count_open_circuits
from service.core.database import DATABASE_DOWN
from service.core.metrics import DISABLED_CALLBACKS, OPEN_CIRCUITS, refresh_queue_depth


async def _refresh_database_gauges(request: web.Request) -> None:
    try:
        await refresh_queue_depth(request.app[POOL])
        DISABLED_CALLBACKS.set(await count_disabled(request.app[POOL]))
        OPEN_CIRCUITS.set(await count_open_circuits(request.app[POOL]))
    except DATABASE_DOWN:
        return  # the process' own metrics are still worth serving


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tag="health",
    authenticated=False,
    media_type="text/plain",
)
async def metrics(request: web.Request, caller: Caller) -> web.Response:
    await _refresh_database_gauges(request)
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
