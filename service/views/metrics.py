"""``GET /metrics``: Prometheus text format. Queue gauges are read from the database when
scraped, so every process reports the same shared queue."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import sql
from service.endpoints import endpoint
from service.keys import POOL
from service.metrics import DISABLED_CALLBACKS, QUEUE_DEPTH
from service.problems import DATABASE_DOWN

Q = sql.load_queries()


async def _refresh_database_gauges(request: web.Request) -> None:
    try:
        depth = await request.app[POOL].fetchrow(Q["queue_depth"], timeout=2)
        disabled = await request.app[POOL].fetchval(Q["disabled_callbacks"], timeout=2)
    except DATABASE_DOWN:
        return  # the process' own metrics are still worth serving
    assert depth is not None
    for state in ("due", "scheduled", "waiting"):
        QUEUE_DEPTH.labels(state).set(depth[state])
    DISABLED_CALLBACKS.set(disabled)


@endpoint(
    "GET",
    "/metrics",
    summary="Prometheus metrics",
    tag="health",
    authenticated=False,
    media_type="text/plain",
)
async def metrics(request: web.Request) -> web.Response:
    await _refresh_database_gauges(request)
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
