"""Tracing with OpenTelemetry, from the emitter's request to the partner's receiver.

Off unless an OTLP endpoint is configured the standard way (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true`` turns it off again). The SDK
reads the rest itself: ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``, headers.
When off, every caller checks ``enabled()`` first and does nothing else: no span, no context.

The W3C trace context of an echo is stored with its notification (``notification_traces``),
so each delivery attempt, however much later and in whichever dispatcher, is a span of that
trace, and the request to the partner carries the attempt's ``traceparent``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)
PROPAGATOR = TraceContextTextMapPropagator()
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_state = {"enabled": False}


class TraceContext(NamedTuple):
    """A W3C trace context as stored with a notification."""

    traceparent: str
    tracestate: str | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure() -> bool:
    """Set up the SDK with the OTLP exporter (HTTP/protobuf) when the environment asks for it;
    whether tracing is on. Once per process, before the app or the dispatcher starts."""
    if _state["enabled"] or not wanted():
        return _state["enabled"]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "callbackhub")})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use_provider(provider)
    log.info("tracing on: exporting spans over OTLP")
    return True


def use_provider(provider: trace.TracerProvider) -> None:
    """Trace with ``provider`` (``configure`` does; so do the tests, with an in-memory one).
    OpenTelemetry takes one global provider per process, so it is set only once."""
    if trace.get_tracer_provider() is not provider:
        trace.set_tracer_provider(provider)
    _state["enabled"] = True


def disable() -> None:
    _state["enabled"] = False


def enabled() -> bool:
    return _state["enabled"]


def tracer() -> Tracer:
    return trace.get_tracer("callbackhub")


def current_context() -> TraceContext | None:
    """The context of the active span, as headers would carry it."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    if "traceparent" not in carrier:
        return None
    return TraceContext(carrier["traceparent"], carrier.get("tracestate"))


def span_headers(span: Span) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) naming ``span``, for an outgoing request."""
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def parent_of(stored: TraceContext | None) -> otel_context.Context | None:
    """The context a span continues: the stored one, or None for a new trace."""
    if stored is None:
        return None
    carrier = {"traceparent": stored.traceparent}
    if stored.tracestate:
        carrier["tracestate"] = stored.tracestate
    return PROPAGATOR.extract(carrier)


def span_context_of(stored: TraceContext | None) -> SpanContext | None:
    parent = parent_of(stored)
    if parent is None:
        return None
    found = trace.get_current_span(parent).get_span_context()
    return found if found.is_valid else None


def links_to(stored: Iterable[TraceContext | None]) -> list[Link]:
    """Span links to each stored context (a batch has many parents, so it links to them)."""
    contexts = (span_context_of(item) for item in stored)
    return [Link(found) for found in contexts if found is not None]


def trace_id_of(traceparent: str | None) -> str | None:
    found = _TRACEPARENT.match(traceparent or "")
    return found.group(1) if found else None


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the active span, for a log line (empty when none)."""
    found = trace.get_current_span().get_span_context()
    if not found.is_valid:
        return {}
    return {"trace_id": f"{found.trace_id:032x}", "span_id": f"{found.span_id:016x}"}
