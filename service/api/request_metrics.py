"""The API's own metric: requests by method, route template and status."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter

from service.core.metrics import HTTP_REQUESTS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_label(request: web.Request) -> str:
    """The route template (``/partners/{partnerUniqueID}``), never the raw path: bounded labels."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Any token is a valid HTTP method: unknown ones share one label, so clients cannot grow the
# number of series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@functools.cache
def _http_requests(method: str, route: str, status: int) -> Counter:
    """The counter for one label set, looked up once (``labels()`` validates on every call)."""
    return HTTP_REQUESTS.labels(method, route, str(status))


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    _http_requests(method, route_label(request), response.status).inc()
    return response
