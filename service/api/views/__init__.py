"""HTTP views: parse, call one domain function, shape the response. The route table
authorises before a view runs."""

from service.api.views import (
    audit_events,
    callbacks,
    deliveries,
    docs,
    echo,
    health,
    metrics,
    notification_types,
    operator,
    partners,
    portal_links,
)

__all__ = [
    "audit_events",
    "callbacks",
    "deliveries",
    "docs",
    "echo",
    "health",
    "metrics",
    "notification_types",
    "operator",
    "partners",
    "portal_links",
]
