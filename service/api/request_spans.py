"""A server span per API request, continuing the caller's W3C trace context (``traceparent``,
``tracestate``) when it sends one. Installed only while tracing is on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from opentelemetry.trace import SpanKind, StatusCode

from service.api.request_metrics import route_label
from service.core import tracing

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def trace_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    route = route_label(request)
    with tracing.tracer().start_as_current_span(
        f"{request.method} {route}",
        context=tracing.PROPAGATOR.extract(request.headers),
        kind=SpanKind.SERVER,
        attributes={
            "http.request.method": request.method,
            "http.route": route,
            "url.path": request.path,
            "client.address": request.remote or "",
        },
    ) as span:
        response = await handler(request)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(StatusCode.ERROR)
        return response
