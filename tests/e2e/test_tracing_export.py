"""`serve` with an OTLP endpoint exports the spans of an echo's whole journey to a real OTLP
receiver, hands the partner the attempt's traceparent, and puts trace ids in its JSON logs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.fleet import Fleet
from tests.support.otlp import ExportedSpan, OtlpReceiver
from tests.support.polling import eventually
from tests.support.processes import callbackhub_env, serve
from tests.support.receiver import Receiver
from tests.support.tokens import auth

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3


@pytest.fixture
async def otlp() -> AsyncIterator[OtlpReceiver]:
    started = await OtlpReceiver().start()
    yield started
    await started.stop()


async def test_an_echo_is_one_trace_from_the_emitter_to_the_partner(
    fleet: Fleet, database: str, tmp_path: Path, otlp: OtlpReceiver, receiver: Receiver
) -> None:
    env = callbackhub_env(database, tmp_path, log_format="json")
    env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_SERVICE_NAME": "callbackhub-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    server = fleet.add(serve("traced", env, fleet.logs))
    await server.spawn().wait_ready()

    traced = {"traceparent": TRACEPARENT}
    async with aiohttp.ClientSession(base_url=server.url, headers=auth()) as http:
        async with http.post("/partners", json={"name": "Traced"}) as response:
            partner = (await response.json())["partnerUniqueId"]
        callback = f"/partners/{partner}/callbacks/2"
        async with http.put(callback, json={"url": receiver.url}) as response:
            assert response.status == 201
        body = {
            "processUniqueId": "7f0c1b8e-2a9d-4e7b-9c1f-0d6f5e4a3b21",
            "noteUniqueId": "0b7a3c2d-1e4f-4a5b-8c9d-6e7f8a9b0c1d",
            "subject": "Income proof",
            "text": "Please upload the latest payslip.",
            "createdAt": "2026-12-01T12:00:00Z",
        }
        async with http.post(callback + "/echo", json=body, headers=traced) as response:
            assert response.status == 202
            notification_id = (await response.json())["notificationId"]
        [received] = await receiver.wait_for(1)
        disable = {"url": receiver.url, "enabled": False}
        async with http.put(callback, json=disable, headers=traced) as response:
            assert response.status == 200
        async with http.get(f"/partners/{partner}/notifications/{notification_id}") as response:
            detail = await response.json()

    def in_trace() -> list[ExportedSpan]:
        return [span for span in otlp.spans if span.trace_id == TRACE_ID]

    async def exported() -> list[ExportedSpan]:
        return in_trace()

    spans = await eventually(
        exported, lambda found: any(s.name.startswith("deliver ") for s in found), timeout=20
    )
    [attempt] = [s for s in spans if s.name == "deliver Notes"]
    [echo] = [s for s in spans if s.kind == SPAN_KIND_SERVER and s.name.endswith("/echo")]
    assert echo.parent_span_id == "b7ad6b7169203331"
    assert attempt.parent_span_id == echo.span_id and attempt.kind == SPAN_KIND_CLIENT
    assert attempt.attributes["callbackhub.notification_id"] == notification_id
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.service_name == "callbackhub-under-test"
    assert received.headers["traceparent"] == f"00-{TRACE_ID}-{attempt.span_id}-01"
    assert detail["traceId"] == TRACE_ID
    assert any(s.name == "store notifications" for s in otlp.spans)

    lines = [json.loads(line) for line in server.log_text().splitlines() if line.startswith("{")]
    [disabled] = [line for line in lines if line["message"] == "callback_disabled"]
    assert disabled["trace_id"] == TRACE_ID and len(disabled["span_id"]) == 16
    assert any(line["message"].startswith("tracing on") for line in lines)
