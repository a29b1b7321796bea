"""Prometheus metrics of the API and the dispatcher, served at ``GET /metrics``.

No label identifies a partner unless ``CALLBACKHUB_METRICS_PER_PARTNER=true``; the ``partner``
label is then filled in, otherwise it stays empty (which Prometheus treats as absent).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter, Gauge, Histogram

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NOTIFICATIONS_ACCEPTED = Counter(
    "callbackhub_notifications_accepted",
    "Notifications accepted by echo (committed, answered 202)",
    ["notification_type", "partner"],
)
DELIVERY_OUTCOMES = Counter(
    "callbackhub_delivery_outcomes",
    "Delivery attempts by outcome: delivered, retried, failed, blocked",
    ["outcome", "notification_type", "partner"],
)
ATTEMPT_DURATION = Histogram(
    "callbackhub_delivery_attempt_duration_seconds",
    "Duration of one delivery attempt (request to partner and response)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
END_TO_END_LAG = Histogram(
    "callbackhub_delivery_lag_seconds",
    "Time from acceptance by echo to the partner's 2xx",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 86400),
)
QUEUE_DEPTH = Gauge(
    "callbackhub_queue_depth",
    "Deliveries waiting: due now, or scheduled for a later attempt",
    ["state"],
)
IN_FLIGHT = Gauge("callbackhub_deliveries_in_flight", "Delivery requests in flight")
DISABLED_CALLBACKS = Gauge("callbackhub_callbacks_disabled", "Callbacks currently disabled")
HTTP_REQUESTS = Counter(
    "callbackhub_http_requests", "API requests by route and status", ["method", "route", "status"]
)


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


@functools.cache
def notifications_accepted(notification_type: int, partner: str) -> Counter:
    """The accepted-notifications counter for one label set (partner is "" unless per-partner
    metrics are on)."""
    return NOTIFICATIONS_ACCEPTED.labels(str(notification_type), partner)


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    _http_requests(method, route_label(request), response.status).inc()
    return response
