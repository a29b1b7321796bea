"""The delivery log (list, detail) and redelivery, with their scopes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.support.api import (
    create_partner,
    emit,
    log_page,
    notification,
    payload,
    put_callback,
    settled,
)
from tests.support.receiver import Receiver, Responder, status
from tests.support.tokens import auth


def _redeliver_path(partner: str, notification_id: str) -> str:
    return f"/partners/{partner}/notifications/{notification_id}/redeliver"


# Listing.


async def test_the_log_lists_newest_first_with_filters_and_pages(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = _fail_notes()
    emitted = []
    for notification_type in (1, 2, 1, 1, 2):
        emitted.append(await emit(client, partner, notification_type, payload(notification_type)))
    for notification_id, notification_type in zip(emitted, (1, 2, 1, 1, 2), strict=True):
        await settled(
            client, partner, notification_id, "delivered" if notification_type == 1 else "failed"
        )

    everything = await log_page(client, partner)
    assert [item["notificationId"] for item in everything["items"]] == emitted[::-1]
    assert (everything["total"], everything["offset"], everything["limit"]) == (5, 0, 20)

    failed = await log_page(client, partner, status="failed")
    assert [item["notificationId"] for item in failed["items"]] == [emitted[4], emitted[1]]
    assert failed["total"] == 2
    assert all(item["failureReason"] == "http_error" for item in failed["items"])

    notes = await log_page(client, partner, notificationType=2)
    assert {item["notificationType"] for item in notes["items"]} == {2}
    assert notes["total"] == 2
    both = await log_page(client, partner, notificationType=1, status="delivered")
    assert [item["notificationId"] for item in both["items"]] == [
        emitted[3],
        emitted[2],
        emitted[0],
    ]

    page = await log_page(client, partner, offset=1, limit=2)
    assert [item["notificationId"] for item in page["items"]] == [emitted[3], emitted[2]]
    assert (page["total"], page["offset"], page["limit"]) == (5, 1, 2)
    beyond = await log_page(client, partner, offset=10)
    assert (beyond["items"], beyond["total"]) == ([], 5)
    empty = await log_page(client, partner, status="cancelled")
    assert (empty["items"], empty["total"]) == ([], 0)


def _fail_notes() -> Responder:
    """Answers 500 to Notes and 200 to everything else."""

    async def respond(request: web.Request) -> web.StreamResponse:
        failing = request.headers["notification-type-id"] == "2"
        return web.Response(status=500 if failing else 200)

    return respond


async def test_summary_fields_of_a_delivered_notification(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 3, receiver.url)

    notification_id = await emit(client, partner, 3, payload(3))

    await settled(client, partner, notification_id, "delivered")
    [item] = (await log_page(client, partner))["items"]
    assert set(item) >= {
        "notificationId",
        "notificationType",
        "status",
        "attempts",
        "createdAt",
        "lastAttemptAt",
        "nextAttemptAt",
        "deliveredAt",
        "failureReason",
    }
    assert (item["notificationType"], item["attempts"]) == (3, 1)
    created = datetime.fromisoformat(item["createdAt"])
    delivered = datetime.fromisoformat(item["deliveredAt"])
    assert created <= delivered
    assert item["nextAttemptAt"] is None


@pytest.mark.parametrize(
    "query", [{"status": "lost"}, {"limit": 0}, {"limit": 101}, {"offset": -1}, {"sort": "x"}]
)
async def test_bad_filters_are_400(client: TestClient, partner: str, query: dict) -> None:
    response = await client.get(
        f"/partners/{partner}/notifications",
        params={k: str(v) for k, v in query.items()},
        headers=auth("deliveries:read"),
    )

    assert response.status == 400


async def test_unknown_partner_or_notification_is_404(client: TestClient, partner: str) -> None:
    read = auth("deliveries:read")

    unknown_partner = await client.get(f"/partners/{uuid.uuid4()}/notifications", headers=read)
    unknown_notification = await client.get(
        f"/partners/{partner}/notifications/{uuid.uuid4()}", headers=read
    )
    redeliver_unknown = await client.post(
        _redeliver_path(partner, str(uuid.uuid4())), headers=auth("deliveries:write")
    )

    assert unknown_partner.status == 404
    assert unknown_notification.status == 404
    assert redeliver_unknown.status == 404


async def test_a_notification_is_visible_to_its_own_partner_only(client: TestClient) -> None:
    mine, theirs = await create_partner(client, "Mine"), await create_partner(client, "Theirs")
    await put_callback(client, mine, 1, "https://broker.example/hook")
    notification_id = await emit(client, mine, 1, payload(1))

    response = await client.get(
        f"/partners/{theirs}/notifications/{notification_id}", headers=auth("deliveries:read")
    )

    assert response.status == 404
    assert (await log_page(client, theirs))["total"] == 0


# Detail.


async def test_the_detail_has_the_payload_and_the_attempt_log(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    receiver.responses = [status(502, body="bad gateway")]
    sent = payload(2, text="Line one\nLine two \u00e9")

    notification_id = await emit(client, partner, 2, sent)

    detail = await settled(client, partner, notification_id, "delivered")
    assert detail["payload"] == sent
    assert detail["notificationId"] == notification_id
    assert detail["attempts"] == 2
    first, second = detail["attemptLog"]
    assert (first["attempt"], first["responseStatus"], first["responseBody"]) == (
        1,
        502,
        "bad gateway",
    )
    assert (second["attempt"], second["responseStatus"]) == (2, 200)
    assert set(first) == {
        "attempt",
        "startedAt",
        "durationMs",
        "responseStatus",
        "responseBody",
        "error",
        "signature",
    }


async def test_a_queued_notification_has_an_empty_attempt_log(
    client: TestClient, partner: str
) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    sent = payload(1)

    notification_id = await emit(client, partner, 1, json.dumps(sent).encode())

    detail = await notification(client, partner, notification_id)
    assert (detail["status"], detail["attempts"], detail["attemptLog"]) == ("queued", 0, [])
    assert detail["payload"] == sent
    assert detail["nextAttemptAt"] is not None


# Redelivery.


async def test_redeliver_sends_the_same_webhook_id_again(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    secret = (await put_callback(client, partner, 2, receiver.url))["signingSecret"]
    notification_id = await emit(client, partner, 2, payload(2))
    await settled(client, partner, notification_id, "delivered")

    response = await client.post(
        _redeliver_path(partner, notification_id), headers=auth("deliveries:write")
    )

    assert response.status == 202
    answer = await response.json()
    assert (answer["notificationId"], answer["status"]) == (notification_id, "queued")
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == notification_id
    assert second.body == first.body
    Webhook(secret).verify(second.body, second.headers)
    detail = await settled(client, partner, notification_id, "delivered")
    assert detail["attempts"] == 2
    assert [a["attempt"] for a in detail["attemptLog"]] == [1, 2]


async def test_redeliver_gives_a_failed_notification_a_fresh_attempt_budget(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = status(500)
    notification_id = await emit(client, partner, 2, payload(2))
    failed = await settled(client, partner, notification_id, "failed")
    assert failed["attempts"] == 4  # the whole budget of the default test schedule
    receiver.responses = [status(500)] * 3  # three more failures, then success
    receiver.default = status(200)

    response = await client.post(
        _redeliver_path(partner, notification_id), headers=auth("deliveries:write")
    )

    assert response.status == 202
    detail = await settled(client, partner, notification_id, "delivered")
    assert detail["attempts"] == 8  # a second round of four, the last one succeeding
    assert detail["failureReason"] is None
    assert [a["responseStatus"] for a in detail["attemptLog"]] == [500] * 7 + [200]
    assert {r.headers["webhook-id"] for r in receiver.received} == {notification_id}


async def test_redeliver_to_a_disabled_callback_is_409(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    notification_id = await emit(client, partner, 1, payload(1))
    await put_callback(client, partner, 1, "https://broker.example/hook", enabled=False)

    response = await client.post(
        _redeliver_path(partner, notification_id), headers=auth("deliveries:write")
    )

    assert response.status == 409
    detail = await notification(client, partner, notification_id)
    assert (detail["status"], detail["failureReason"]) == ("failed", "callback_disabled")


async def test_redeliver_failed_queues_the_failed_ones_since_a_time(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    receiver.default = status(500)
    before = datetime.now(UTC) - timedelta(seconds=5)
    failed = [await emit(client, partner, 2, payload(2)) for _ in range(3)]
    for notification_id in failed:
        await settled(client, partner, notification_id, "failed")
    receiver.default = status(200)
    delivered = await emit(client, partner, 2, payload(2))
    await settled(client, partner, delivered, "delivered")
    write = auth("deliveries:write")
    path = f"/partners/{partner}/notifications/redeliver-failed"

    later = await client.post(
        path, json={"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, headers=write
    )
    assert (later.status, await later.json()) == (202, {"queued": 0})
    response = await client.post(path, json={"since": before.isoformat()}, headers=write)

    assert response.status == 202
    assert await response.json() == {"queued": 3}
    for notification_id in failed:
        detail = await settled(client, partner, notification_id, "delivered")
        assert detail["attempts"] == 5
    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids.count(delivered) == 1  # only the failed ones were sent again
    again = await client.post(path, json={"since": before.isoformat()}, headers=write)
    assert await again.json() == {"queued": 0}


@pytest.mark.parametrize("since", ["yesterday", "2024-05-01T12:00:00", None])
async def test_redeliver_failed_needs_a_time_with_offset(
    client: TestClient, partner: str, since: str | None
) -> None:
    response = await client.post(
        f"/partners/{partner}/notifications/redeliver-failed",
        json={} if since is None else {"since": since},
        headers=auth("deliveries:write"),
    )

    assert response.status == 400


# Scopes.


async def test_reading_needs_deliveries_read(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    notification_id = await emit(client, partner, 1, payload(1))
    paths = [
        f"/partners/{partner}/notifications",
        f"/partners/{partner}/notifications/{notification_id}",
    ]

    for path in paths:
        for scope in ("deliveries:write", "notifications:emit", "callbacks:read"):
            assert (await client.get(path, headers=auth(scope))).status == 403, (path, scope)
        assert (await client.get(path, headers=auth("deliveries:read"))).status == 200
        assert (await client.get(path)).status == 401


async def test_redelivering_needs_deliveries_write(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    notification_id = await emit(client, partner, 1, payload(1))
    requests = [
        (_redeliver_path(partner, notification_id), None),
        (
            f"/partners/{partner}/notifications/redeliver-failed",
            {"since": datetime.now(UTC).isoformat()},
        ),
    ]

    for path, body in requests:
        for scope in ("deliveries:read", "notifications:emit", "callbacks:write"):
            response = await client.post(path, json=body, headers=auth(scope))
            assert response.status == 403, (path, scope)
        response = await client.post(path, json=body, headers=auth("deliveries:write"))
        assert response.status == 202, path


async def test_a_partner_token_reads_only_its_own_log(client: TestClient) -> None:
    mine, theirs = await create_partner(client, "Mine"), await create_partner(client, "Theirs")
    headers = auth("deliveries:read deliveries:write", partner=mine)

    own = await client.get(f"/partners/{mine}/notifications", headers=headers)
    other = await client.get(f"/partners/{theirs}/notifications", headers=headers)

    assert own.status == 200
    assert other.status == 403
