"""Failed attempts: retries and their log, timeouts, refused connections, redirects, 410 Gone,
Retry-After, and disabling a callback that keeps failing."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.support.api import (
    create_partner,
    emit,
    get_callback,
    notification,
    payload,
    post_echo,
    put_callback,
    settled,
)
from tests.support.polling import eventually
from tests.support.receiver import Receiver, Responder, hang, status


@pytest.fixture
async def partner_with_dispatcher(client_with_dispatcher: TestClient) -> str:
    return await create_partner(client_with_dispatcher)


async def test_500_500_200_is_delivered_on_the_third_attempt(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 1, receiver.url)
    big = "".join(chr(ord("a") + i % 26) for i in range(10 * 1024))
    receiver.responses = [status(500, body=big), status(500, body="try later")]
    receiver.default = status(200, body="thanks")

    notification_id = await emit(client, partner, 1, payload(1))

    detail = await settled(client, partner, notification_id, "delivered")
    assert detail["attempts"] == 3
    assert detail["failureReason"] is None
    log = detail["attemptLog"]
    assert [a["attempt"] for a in log] == [1, 2, 3]
    assert [a["responseStatus"] for a in log] == [500, 500, 200]
    assert [a["responseBody"] for a in log] == [big[:4096], "try later", "thanks"]
    assert [a["error"] for a in log] == [None, None, None]
    assert all(isinstance(a["durationMs"], int) and a["durationMs"] >= 0 for a in log)
    started = [datetime.fromisoformat(a["startedAt"]) for a in log]
    assert started == sorted(started)
    assert all(moment.tzinfo is not None for moment in started)
    assert len(receiver.received) == 3


async def test_an_exhausted_schedule_ends_failed(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = status(503)

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, notification_id, "failed")
    assert detail["attempts"] == 4  # the first attempt and one per entry of the schedule
    assert detail["failureReason"] == "http_error"
    assert [a["responseStatus"] for a in detail["attemptLog"]] == [503] * 4
    assert detail["nextAttemptAt"] is None
    assert detail["deliveredAt"] is None
    assert [a["responseStatus"] for a in detail["attemptLog"]] == [503] * 4
    assert len(receiver.received) == 4


@pytest.mark.parametrize(
    "settings", [{"delivery_timeout": 0.3, "retry_schedule": (0.05,)}], indirect=True
)
async def test_a_timeout_is_a_failed_attempt(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = hang()

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, notification_id, "failed")
    assert detail["failureReason"] == "timeout"
    log = detail["attemptLog"]
    assert [(a["responseStatus"], a["error"]) for a in log] == [(None, "timeout")] * 2
    assert all(a["durationMs"] >= 250 for a in log)
    assert len(receiver.received) == 2


async def test_a_refused_connection_is_a_failed_attempt(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now.
    await put_callback(client, partner, 2, f"http://127.0.0.1:{port}/hook")

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, notification_id, "failed")
    log = detail["attemptLog"]
    assert len(log) == 4
    assert all(a["responseStatus"] is None for a in log)
    assert all(a["error"].startswith("connection failed") for a in log)
    assert detail["failureReason"] == "connection_failed"


@pytest.mark.parametrize("code", [301, 302, 307, 308])
async def test_a_redirect_is_a_failure_and_is_not_followed(
    client_with_dispatcher: TestClient,
    partner_with_dispatcher: str,
    receiver: Receiver,
    code: int,
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    elsewhere = await Receiver().start()
    try:
        await put_callback(client, partner, 2, receiver.url)
        receiver.default = status(code, headers={"Location": elsewhere.url})

        notification_id = await emit(client, partner, 2, payload(2))

        detail = await settled(client, partner, notification_id, "failed")
        assert [a["responseStatus"] for a in detail["attemptLog"]] == [code] * 4
        assert detail["failureReason"] == "http_error"
        assert elsewhere.received == []
    finally:
        await elsewhere.stop()


@pytest.mark.parametrize("settings", [{"retry_schedule": (30.0,)}], indirect=True)
async def test_410_disables_the_callback_and_fails_its_pending_notifications(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = status(500)
    waiting = [await emit(client, partner, 2, payload(2)) for _ in range(3)]
    await receiver.wait_for(3)
    for notification_id in waiting:  # each waits 30 s for its retry
        await eventually(
            lambda n=notification_id: notification(client, partner, n),
            lambda d: d["status"] == "queued" and d["attempts"] == 1,
        )
    receiver.default = status(410)

    gone = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, gone, "failed")
    assert detail["failureReason"] == "gone"
    assert [a["responseStatus"] for a in detail["attemptLog"]] == [410]
    callback = await get_callback(client, partner, 2)
    assert callback["enabled"] is False
    assert callback["disabledReason"] == "gone"
    for notification_id in waiting:
        other = await notification(client, partner, notification_id)
        assert (other["status"], other["failureReason"]) == ("failed", "gone")
    assert (await post_echo(client, partner, 2, payload(2))).status == 409
    assert len(receiver.received) == 4


@pytest.mark.parametrize("settings", [{"retry_schedule": (0.3, 0.3)}], indirect=True)
@pytest.mark.parametrize("code", [429, 503])
async def test_retry_after_pauses_the_callback_for_as_long_as_asked(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver, code: int
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.responses = [status(code, headers={"Retry-After": "2"})]

    notification_id = await emit(client, partner, 2, payload(2))

    await settled(client, partner, notification_id, "delivered")
    first, second = receiver.received
    gap = second.at - first.at
    # The schedule says 0.3 s; the header pauses the whole callback for 2 s (at most an hour:
    # tests/dispatcher/test_circuit_rules.py).
    assert 2.0 <= gap < 4.0


@pytest.mark.parametrize("settings", [{"retry_schedule": (0.3, 0.3)}], indirect=True)
async def test_retry_after_shorter_than_the_schedule_is_raised_to_it(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.responses = [status(429, headers={"Retry-After": "0"})]

    notification_id = await emit(client, partner, 2, payload(2))

    await settled(client, partner, notification_id, "delivered")
    first, second = receiver.received
    assert second.at - first.at >= 0.25


@pytest.mark.parametrize(
    "settings", [{"retry_schedule": (0.3,) * 6, "disable_after": 0.2}], indirect=True
)
async def test_a_callback_failing_longer_than_disable_after_is_disabled(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = status(500)

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, notification_id, "failed")
    assert detail["failureReason"] == "callback_disabled"
    assert 2 <= detail["attempts"] < 7  # stopped before the schedule ran out
    callback = await get_callback(client, partner, 2)
    assert (callback["enabled"], callback["disabledReason"]) == (False, "failing")
    assert (await post_echo(client, partner, 2, payload(2))).status == 409

    # Enabling it again resets the failure window: one more failure does not disable it.
    enabled = await put_callback(client, partner, 2, receiver.url, enabled=True)
    assert (enabled["enabled"], enabled["disabledReason"]) == (True, None)
    receiver.responses = [status(500)]
    receiver.default = status(200)
    again = await emit(client, partner, 2, payload(2))
    detail = await settled(client, partner, again, "delivered")
    assert [a["responseStatus"] for a in detail["attemptLog"]] == [500, 200]
    assert (await get_callback(client, partner, 2))["enabled"] is True


@pytest.mark.parametrize(
    "settings", [{"retry_schedule": (0.3,) * 6, "disable_after": 0.2}], indirect=True
)
async def test_a_success_in_between_keeps_the_callback_enabled(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    # Failures, each followed by a success: the failure window never grows past one retry gap.
    receiver.responses = [status(500), status(200), status(500), status(200)]

    first = await emit(client, partner, 2, payload(2))
    await settled(client, partner, first, "delivered")
    second = await emit(client, partner, 2, payload(2))
    await settled(client, partner, second, "delivered")

    assert (await get_callback(client, partner, 2))["enabled"] is True


def _trickle(chunks: list[bytes]) -> Responder:
    """A partner that sends its answer in pieces, as a slow server does."""

    async def respond(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
            await asyncio.sleep(0.05)  # a slow partner, not synchronisation
        await response.write_eof()
        return response

    return respond


async def test_a_body_that_arrives_in_pieces_is_kept_up_to_4_kib(
    client_with_dispatcher: TestClient, partner_with_dispatcher: str, receiver: Receiver
) -> None:
    client, partner = client_with_dispatcher, partner_with_dispatcher
    await put_callback(client, partner, 2, receiver.url)
    chunks = [bytes([ord("a") + i]) * 1024 for i in range(10)]
    receiver.responses = [_trickle(chunks), _trickle(chunks[:2])]

    notification_id = await emit(client, partner, 2, payload(2))

    detail = await settled(client, partner, notification_id, "delivered")
    bodies = [a["responseBody"] for a in detail["attemptLog"]]
    print([len(b) for b in bodies], [a["durationMs"] for a in detail["attemptLog"]])
    assert bodies == [b"".join(chunks)[:4096].decode(), b"".join(chunks[:2]).decode(), "ok"]
