"""Prometheus metrics of the API and the dispatcher, served at ``GET /metrics``.

No label identifies a partner unless ``CALLBACKHUB_METRICS_PER_PARTNER=true``; the ``partner``
label is then filled in, otherwise it stays empty (which Prometheus treats as absent).
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

import sql
from service.core.database import Pool

Q = sql.load_queries("metrics")

NOTIFICATIONS_ACCEPTED = Counter(
    "callbackhub_notifications_accepted",
    "Notifications accepted by echo and stored (committed, answered 202)",
    ["notification_type", "partner"],
)
NOTIFICATIONS_REPLAYED = Counter(
    "callbackhub_notifications_replayed",
    "Echoes that repeated an Idempotency-Key with the same body: answered 202 with the first"
    " notification's id, nothing new stored",
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
CLAIMS = Counter(
    "callbackhub_dispatcher_claims",
    "Claims of due deliveries the dispatcher made, by whether they returned any",
    ["result"],
)
DISABLED_CALLBACKS = Gauge("callbackhub_callbacks_disabled", "Callbacks currently disabled")
OPEN_CIRCUITS = Gauge(
    "callbackhub_circuits_open", "Callbacks whose circuit breaker is open (or probing)"
)
OPERATOR_EVENTS = Counter(
    "callbackhub_operator_events",
    "Operational events produced, by type (queued for the operator webhook when it subscribes)",
    ["type"],
)
HTTP_REQUESTS = Counter(
    "callbackhub_http_requests", "API requests by route and status", ["method", "route", "status"]
)


@functools.cache
def notifications_accepted(notification_type: int, partner: str, replay: bool) -> Counter:
    """The counter of stored notifications (or of replays) for one label set (partner is ""
    unless per-partner metrics are on), looked up once."""
    counter = NOTIFICATIONS_REPLAYED if replay else NOTIFICATIONS_ACCEPTED
    return counter.labels(str(notification_type), partner)


async def refresh_queue_depth(pool: Pool) -> None:
    """Read the shared queue's depth from the database into ``QUEUE_DEPTH``."""
    depth = await pool.fetchrow(Q["queue_depth"], timeout=2)
    assert depth is not None
    for state in ("due", "scheduled", "waiting"):
        QUEUE_DEPTH.labels(state).set(depth[state])
