"""HTTP views: parse, call one domain function, shape the response. The route table
authorises before a view runs."""

from service.api.views import (
    callbacks,
    deliveries,
    docs,
    echo,
    health,
    metrics,
    notification_types,
    partners,
)

__all__ = [
    "callbacks",
    "deliveries",
    "docs",
    "echo",
    "health",
    "metrics",
    "notification_types",
    "partners",
]
