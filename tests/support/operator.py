"""The platform team's side: registering the operator webhook, and the events its receiver got,
each verified with the real ``standardwebhooks`` package and the operator secret."""

from __future__ import annotations

import json
from typing import Any

from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from tests.support.polling import eventually
from tests.support.receiver import Receiver
from tests.support.tokens import auth


async def register_operator_webhook(
    client: TestClient, url: str, events: list[str] | None = None, **headers: str
) -> str:
    """PUT /operator/webhook (expects 201); the signing secret."""
    body: dict[str, Any] = {"url": url}
    if events is not None:
        body["events"] = events
    response = await client.put("/operator/webhook", json=body, headers=headers or auth())
    assert response.status == 201, await response.text()
    secret: str = (await response.json())["signingSecret"]
    return secret


def verified_events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every event received so far, its signature verified (raises when one does not)."""
    events = []
    for received in receiver.received:
        Webhook(secret).verify(received.body, received.headers)
        event = json.loads(received.body)
        assert received.headers["callbackhub-event-type"] == event["type"]
        events.append(event | {"webhookId": received.headers["webhook-id"]})
    return events


async def wait_for_event(
    receiver: Receiver,
    secret: str,
    event_type: str,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """The first received event of ``event_type`` (waiting for it with a deadline)."""

    async def probe() -> list[dict[str, Any]]:
        return [e for e in verified_events(receiver, secret) if e["type"] == event_type]

    found = await eventually(probe, bool, timeout=timeout)
    return found[0]


async def stored_events(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(
        "/operator/events", params={k: str(v) for k, v in params.items()}, headers=auth()
    )
    assert response.status == 200, await response.text()
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items
