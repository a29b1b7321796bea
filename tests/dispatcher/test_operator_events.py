"""Operational events: each type produced by a real cause and received by a real operator
endpoint, signed with the operator secret (verified with ``standardwebhooks``); the operator
webhook's API; the event log with its attempts and redelivery; and a failing operator endpoint
that never delays a partner's delivery."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.support.api import (
    create_partner,
    emit,
    payload,
    problem,
    put_callback,
    settled,
    validation_problem,
)
from tests.support.operator import (
    register_operator_webhook,
    stored_events,
    verified_events,
    wait_for_event,
)
from tests.support.polling import eventually
from tests.support.receiver import Receiver, hang, status
from tests.support.tokens import auth, bearer, claims, hs256

ALICE = bearer(hs256(claims("partners:admin", sub="alice@platform")))


@pytest.fixture
async def inbox() -> AsyncIterator[Receiver]:
    """The platform team's endpoint for operational events."""
    started = await Receiver().start()
    yield started
    await started.stop()


def assert_time(text: str) -> None:
    assert text.endswith("Z") and datetime.fromisoformat(text).tzinfo is not None


async def test_callback_changes_reach_the_operator_with_the_actor(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    path = f"/partners/{partner}/callbacks/2"

    steps: list[tuple[str, Any, int]] = [
        ("PUT", {"url": receiver.url}, 201),
        ("PUT", {"url": receiver.url + "/v2"}, 200),
        ("POST:secret/rotate", None, 200),
        ("PUT", {"url": receiver.url + "/v2", "enabled": False}, 200),
        ("PUT", {"url": receiver.url + "/v2", "enabled": True}, 200),
        ("DELETE", None, 204),
    ]
    for method, body, expected in steps:
        if method.startswith("POST:"):
            response = await client.post(f"{path}/{method[5:]}", headers=ALICE)
        else:
            response = await client.request(method, path, json=body, headers=ALICE)
        assert response.status == expected, await response.text()

    expected_types = [
        "callback.created",
        "callback.updated",
        "callback.secret_rotated",
        "callback.updated",
        "callback.disabled",
        "callback.updated",
        "callback.enabled",
        "callback.deleted",
    ]
    await inbox.wait_for(len(expected_types))
    events = verified_events(inbox, secret)
    # One at a time in the order they were recorded: each step committed before the next.
    assert sorted(e["type"] for e in events) == sorted(expected_types)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
        assert set(event) == {"type", "timestamp", "data", "webhookId"}
        assert_time(event["timestamp"])
        assert event["data"]["partnerUniqueId"] == partner
        assert event["data"]["notificationType"] == 2
    created = by_type["callback.created"][0]["data"]
    assert created == {
        "partnerUniqueId": partner,
        "notificationType": 2,
        "url": receiver.url,
        "actor": "alice@platform",
    }
    assert {e["data"]["url"] for e in by_type["callback.updated"]} == {receiver.url + "/v2"}
    assert all(e["data"]["actor"] == "alice@platform" for e in by_type["callback.updated"])
    rotated = by_type["callback.secret_rotated"][0]["data"]
    assert rotated["actor"] == "alice@platform"
    assert_time(rotated["previousSecretExpiresAt"])
    disabled = by_type["callback.disabled"][0]["data"]
    assert disabled == {
        "partnerUniqueId": partner,
        "notificationType": 2,
        "reason": "manual",
        "failingSince": None,
    }
    assert by_type["callback.enabled"][0]["data"]["actor"] == "alice@platform"
    assert by_type["callback.deleted"][0]["data"] == {
        "partnerUniqueId": partner,
        "notificationType": 2,
        "url": receiver.url + "/v2",
        "actor": "alice@platform",
    }
    # The log has them too, delivered, each with its attempt.
    stored = await stored_events(client, status="delivered", limit=100)
    assert sorted(e["type"] for e in stored) == sorted(expected_types)
    assert all(len(e["attemptLog"]) == 1 for e in stored)
    assert {e["id"] for e in stored} == {e["webhookId"] for e in events}


async def test_a_410_disables_the_callback_and_fails_what_it_had(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.default = status(410)

    notification_id = await emit(client, partner, 1, payload(1))

    disabled = await wait_for_event(inbox, secret, "callback.disabled")
    assert disabled["data"]["reason"] == "gone"
    assert disabled["data"]["failingSince"] is None  # gone at once, not after failing
    exhausted = await wait_for_event(inbox, secret, "notification.exhausted")
    assert exhausted["data"]["notificationId"] == notification_id
    assert exhausted["data"]["failureReason"] == "gone"
    assert exhausted["data"]["attempts"] == 1
    assert exhausted["data"]["lastAttempt"]["status"] == 410


@pytest.mark.parametrize("settings", [{"retry_schedule": (0.05,) * 6}], indirect=True)
async def test_failing_then_recovered(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.responses = [status(500, body="down")] * 4

    notification_id = await emit(client, partner, 1, payload(1))
    await settled(client, partner, notification_id, "delivered")

    failing = await wait_for_event(inbox, secret, "notification.failing")
    recovered = await wait_for_event(inbox, secret, "notification.recovered")
    assert failing["data"]["notificationId"] == notification_id
    assert failing["data"]["attempts"] == 4  # CALLBACKHUB_FAILING_AFTER's default
    last = failing["data"]["lastAttempt"]
    assert (last["status"], last["error"]) == (500, None)
    assert_time(last["at"])
    assert recovered["data"]["notificationId"] == notification_id
    assert recovered["data"]["attempts"] == 5
    assert recovered["data"]["lastAttempt"]["status"] == 200
    assert [e["type"] for e in verified_events(inbox, secret)].count("notification.failing") == 1


async def test_exhausted_after_the_last_attempt(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.default = status(503)

    notification_id = await emit(client, partner, 1, payload(1))
    await settled(client, partner, notification_id, "failed")

    exhausted = await wait_for_event(inbox, secret, "notification.exhausted")
    assert exhausted["data"]["failureReason"] == "http_error"
    assert exhausted["data"]["attempts"] == 4
    assert exhausted["data"]["lastAttempt"]["status"] == 503
    failing = await wait_for_event(inbox, secret, "notification.failing")
    assert failing["data"]["attempts"] == 4


@pytest.mark.parametrize(
    "settings",
    [{"disable_after": 0.3, "retry_schedule": (0.1,) * 20, "circuit_failures": 100}],
    indirect=True,
)
async def test_a_callback_failing_too_long_is_disabled(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url, events=["callback.disabled"])
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)
    receiver.default = status(500)

    await emit(client, partner, 1, payload(1))

    disabled = await wait_for_event(inbox, secret, "callback.disabled")
    assert disabled["data"]["reason"] == "failing"
    assert_time(disabled["data"]["failingSince"])
    # Subscribed to callback.disabled only: the notification's events were never queued.
    assert {e["type"] for e in verified_events(inbox, secret)} == {"callback.disabled"}
    assert {e["type"] for e in await stored_events(client)} == {"callback.disabled"}


@pytest.mark.parametrize(
    "settings", [{"circuit_failures": 2, "retry_schedule": (0.05,) * 6}], indirect=True
)
async def test_the_circuit_opening_and_closing(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url, maxInFlight=1)
    receiver.responses = [status(503), status(502)]

    notification_id = await emit(client, partner, 1, payload(1))
    await settled(client, partner, notification_id, "delivered")

    opened = await wait_for_event(inbox, secret, "callback.circuit_opened")
    closed = await wait_for_event(inbox, secret, "callback.circuit_closed")
    assert opened["data"] == {
        "partnerUniqueId": partner,
        "notificationType": 1,
        "consecutiveFailures": 2,
        "lastError": "HTTP 502",
    }
    assert closed["data"] == opened["data"]  # the run of failures it closed after


async def test_a_failing_operator_endpoint_never_delays_partners(
    client_with_dispatcher: TestClient, inbox: Receiver, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    inbox.default = hang()  # until the delivery timeout (2 s in the tests), every time
    await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, receiver.url)  # callback.created waits for inbox
    # Partner traffic while the operator endpoint hangs, and events that pile up for it.
    await eventually(lambda: stored_events(client, status="delivering"), bool)
    started = time.monotonic()
    ids = [await emit(client, partner, 1, payload(1)) for _ in range(40)]
    await receiver.wait_for(40)

    assert time.monotonic() - started < 2.0  # less than one operator request's timeout
    assert {r.headers["webhook-id"] for r in receiver.received} == set(ids)
    [event] = await stored_events(client)
    assert event["type"] == "callback.created"


async def test_the_operator_webhook_api(
    client_with_dispatcher: TestClient, inbox: Receiver
) -> None:
    client = client_with_dispatcher
    assert (await client.get("/operator/webhook", headers=auth())).status == 404
    blocked = await client.put(
        "/operator/webhook", json={"url": "http://10.1.2.3/events"}, headers=auth()
    )
    assert "url" in await validation_problem(blocked)
    bad_type = await client.put(
        "/operator/webhook", json={"url": inbox.url, "events": ["nope"]}, headers=auth()
    )
    assert bad_type.status == 400
    partner_token = auth("callbacks:write")
    assert (await client.get("/operator/webhook", headers=partner_token)).status == 403

    secret = await register_operator_webhook(client, inbox.url, events=["callback.created"])
    assert secret.startswith("whsec_")
    changed = await client.put(
        "/operator/webhook", json={"url": inbox.url, "enabled": False}, headers=auth()
    )
    assert changed.status == 200
    body = await changed.json()
    assert "signingSecret" not in body
    assert (body["url"], body["enabled"], body["events"]) == (inbox.url, False, None)
    fetched = await (await client.get("/operator/webhook", headers=auth())).json()
    assert fetched == body

    # Disabled: a change makes no event for it.
    partner = await create_partner(client)
    await put_callback(client, partner, 1, inbox.url)
    assert await stored_events(client) == []

    rotated = await client.post("/operator/webhook/secret/rotate", headers=auth())
    assert rotated.status == 200
    new_secret = (await rotated.json())["signingSecret"]
    assert new_secret != secret
    await client.put("/operator/webhook", json={"url": inbox.url}, headers=auth())
    await client.delete(f"/partners/{partner}/callbacks/1", headers=auth())
    await inbox.wait_for(1)
    during = inbox.received[0]
    Webhook(secret).verify(during.body, during.headers)  # the overlap: both sign
    Webhook(new_secret).verify(during.body, during.headers)

    audit = await client.get("/audit-events?action=operator_webhook.changed", headers=auth())
    records = (await audit.json())["items"]
    assert [r["details"]["change"] for r in records] == [
        "updated",
        "secret_rotated",
        "updated",
        "created",
    ]
    assert secret not in await audit.text() and new_secret not in await audit.text()

    assert (await client.delete("/operator/webhook", headers=auth())).status == 204
    assert (await client.delete("/operator/webhook", headers=auth())).status == 404
    gone = await client.post("/operator/webhook/secret/rotate", headers=auth())
    await problem(gone, 404)


async def test_events_are_listed_filtered_and_redelivered(
    client_with_dispatcher: TestClient, inbox: Receiver
) -> None:
    client = client_with_dispatcher
    inbox.responses = [status(500, body="not now")]
    secret = await register_operator_webhook(client, inbox.url)
    partner = await create_partner(client)
    await put_callback(client, partner, 1, inbox.url + "/partner")
    await client.delete(f"/partners/{partner}/callbacks/1", headers=auth())

    delivered = await eventually(
        lambda: stored_events(client, status="delivered"), lambda items: len(items) == 2
    )
    created = next(e for e in delivered if e["type"] == "callback.created")
    assert [a["responseStatus"] for a in created["attemptLog"]] == [500, 200]
    assert created["attemptLog"][0]["responseBody"] == "not now"
    assert created["attempts"] == 2
    assert [e["type"] for e in await stored_events(client, type="callback.deleted")] == [
        "callback.deleted"
    ]
    assert await stored_events(client, status="failed") == []

    response = await client.post(f"/operator/events/{created['id']}/redeliver", headers=auth())
    assert response.status == 202
    again = await wait_until_received_twice(inbox, created["id"])
    Webhook(secret).verify(again.body, again.headers)
    one = await client.get(f"/operator/events/{created['id']}", headers=auth())
    assert (await one.json())["body"] == created["body"]
    unknown = "0190f5d2-0000-7000-8000-000000000000"
    missing = await client.post(f"/operator/events/{unknown}/redeliver", headers=auth())
    await problem(missing, 404)


async def wait_until_received_twice(inbox: Receiver, webhook_id: str) -> Any:
    async def probe() -> list[Any]:
        return [r for r in inbox.received if r.headers["webhook-id"] == webhook_id]

    # The first (a 500), the retry, the redelivery.
    return (await eventually(probe, lambda found: len(found) == 3))[-1]


async def test_events_are_counted_in_the_metrics(
    client_with_dispatcher: TestClient, inbox: Receiver
) -> None:
    client = client_with_dispatcher

    def created_count(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('callbackhub_operator_events_total{type="callback.created"}'):
                return float(line.split()[-1])
        return 0.0

    before = created_count(await (await client.get("/metrics")).text())
    partner = await create_partner(client)
    await put_callback(client, partner, 1, inbox.url)
    after = created_count(await (await client.get("/metrics")).text())
    assert after == before + 1
    assert "callbackhub_circuits_open 0.0" in await (await client.get("/metrics")).text()


async def test_a_change_that_fails_makes_no_event(
    client_with_dispatcher: TestClient, inbox: Receiver
) -> None:
    client = client_with_dispatcher
    await register_operator_webhook(client, inbox.url)
    unknown_partner = "0190f5d2-0000-7000-8000-000000000001"
    response = await client.put(
        f"/partners/{unknown_partner}/callbacks/1", json={"url": inbox.url}, headers=auth()
    )
    await problem(response, 404)
    assert await stored_events(client) == []
