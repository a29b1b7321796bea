"""Spans recorded in this process: the SDK's in-memory exporter behind a real TracerProvider."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from service.core import tracing

# One provider for the whole session: OpenTelemetry allows one global provider per process.
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


class Spans:
    def finished(self) -> list[ReadableSpan]:
        return list(EXPORTER.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name.startswith(prefix)]


@pytest.fixture
def spans() -> Iterator[Spans]:
    """Tracing on for this test (request it before the app fixtures: the app reads it)."""
    EXPORTER.clear()
    tracing.use_provider(PROVIDER)
    yield Spans()
    tracing.disable()
    EXPORTER.clear()
