"""HTTP views: parse and authorise, call one domain function, shape the response."""

from service.views import callbacks, deliveries, docs, echo, health, metrics, partners

__all__ = ["callbacks", "deliveries", "docs", "echo", "health", "metrics", "partners"]
