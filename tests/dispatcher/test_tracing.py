"""Tracing in one process, with the SDK's in-memory exporter: an echo's trace context travels
through PostgreSQL to every attempt and on to the partner."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.support.api import create_partner, payload, post_echo, put_callback, settled
from tests.support.polling import eventually
from tests.support.receiver import Receiver, status
from tests.support.spans import Spans
from tests.support.tokens import auth

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def _echo(client: TestClient, partner: str, headers: dict[str, str]) -> str:
    response = await client.post(
        f"/partners/{partner}/callbacks/2/echo",
        json=payload(2),
        headers=auth("notifications:emit") | headers,
    )
    assert response.status == 202, await response.text()
    notification_id: str = (await response.json())["notificationId"]
    return notification_id


async def test_an_echos_traceparent_reaches_the_attempt_span_and_the_partner(
    spans: Spans, client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    notification_id = await _echo(
        client, partner, {"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
    )
    detail = await settled(client, partner, notification_id, "delivered")
    [received] = await receiver.wait_for(1)

    [attempt] = await _finished(spans, "deliver ", 1)
    assert f"{attempt.context.trace_id:032x}" == TRACE_ID
    assert attempt.kind is SpanKind.CLIENT
    assert attempt.attributes is not None
    assert attempt.attributes["callbackhub.notification_id"] == notification_id
    assert attempt.attributes["callbackhub.partner_id"] == partner
    assert attempt.attributes["callbackhub.attempt"] == 1
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["callbackhub.outcome"] == "succeeded"
    # The partner's request names the attempt span, in the emitter's trace.
    assert received.headers["traceparent"] == (f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01")
    assert received.headers["tracestate"] == "vendor=1"
    # The attempt is a child of the echo's server span, itself a child of the emitter's.
    [echo] = [s for s in spans.named("POST ") if s.name.endswith("/echo")]
    assert echo.kind is SpanKind.SERVER and echo.parent is not None
    assert f"{echo.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert attempt.parent is not None and attempt.parent.span_id == echo.context.span_id
    assert detail["traceId"] == TRACE_ID
    # The group commit and the claim are spans of their own, linked to the notification.
    for name, size in (
        ("store notifications", "callbackhub.batch.size"),
        ("claim deliveries", "callbackhub.claim.size"),
    ):
        [batch] = [
            s
            for s in spans.named(name)
            if any(link.context.trace_id == attempt.context.trace_id for link in s.links)
        ]
        assert batch.attributes is not None and batch.attributes[size] == 1
        assert batch.context.trace_id != attempt.context.trace_id  # linked, not a parent


async def _finished(spans: Spans, prefix: str, count: int) -> list[ReadableSpan]:
    """The finished spans named ``prefix…`` once there are ``count`` of them."""

    async def named() -> list[ReadableSpan]:
        return spans.named(prefix)

    return await eventually(named, lambda found: len(found) >= count)


async def test_three_attempts_are_three_spans_of_one_trace_with_their_statuses(
    spans: Spans, client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    receiver.responses = [status(500), status(500)]
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    notification_id = await _echo(client, partner, {})  # no traceparent: a new trace
    await settled(client, partner, notification_id, "delivered")

    attempts = await _finished(spans, "deliver ", 3)
    attempts.sort(key=lambda span: span.attributes["callbackhub.attempt"])  # type: ignore[index]
    assert len({span.context.trace_id for span in attempts}) == 1
    assert [s.attributes["http.response.status_code"] for s in attempts] == [500, 500, 200]  # type: ignore[index]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    assert [s.attributes["callbackhub.failure_reason"] for s in attempts[:2]] == [  # type: ignore[index]
        "http_error",
        "http_error",
    ]
    traceparents = {r.headers["traceparent"].split("-")[1] for r in receiver.received}
    assert traceparents == {f"{attempts[0].context.trace_id:032x}"}


async def test_with_tracing_off_nothing_is_traced_or_sent(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    notification_id = await _echo(client, partner, {"traceparent": TRACEPARENT})
    detail = await settled(client, partner, notification_id, "delivered")
    [received] = await receiver.wait_for(1)
    assert "traceparent" not in received.headers
    assert detail["traceId"] is None
    response = await post_echo(client, partner, 2, payload(2))
    assert response.status == 202
