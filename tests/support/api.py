"""Driving the API as its clients do: partners, callbacks, echoes, the delivery log, and the
problem+json answers. One helper per action, shared by every test.

Partners and callbacks are set up the same way in-process (an aiohttp ``TestClient``) and
against a running ``callbackhub`` (an ``aiohttp.ClientSession`` with ``base_url``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.support.polling import eventually
from tests.support.tokens import auth

JSON = {"Content-Type": "application/json"}
FINAL = frozenset({"delivered", "failed", "cancelled"})

Client = TestClient | aiohttp.ClientSession
"""What a helper sends requests with: the in-process test client, or a session whose
``base_url`` is a running server's."""


def payload(notification_type: int, process: uuid.UUID | None = None, **fields: Any) -> dict:
    """A valid payload of the type about ``process`` (its subject), ``fields`` overriding."""
    base: dict[str, Any] = {"processUniqueId": str(process or uuid.uuid4())}
    if notification_type == 1:
        base |= {
            "statusId": 5,
            "statusDescription": "Under review",
            "previousStatusId": 4,
            "changedAt": "2024-05-01T12:00:00+02:00",
        }
    elif notification_type == 2:
        base |= {
            "noteUniqueId": str(uuid.uuid4()),
            "subject": "Income proof",
            "text": "Please upload the latest payslip.",
            "author": "Underwriter",
            "createdAt": "2024-05-01T12:00:00Z",
        }
    else:
        base |= {
            "documentUniqueId": str(uuid.uuid4()),
            "documentTypeId": 7,
            "fileName": "payslip.pdf",
            "title": "Payslip May",
            "action": "created",
            "occurredAt": "2024-05-01T12:00:00Z",
        }
    return base | fields


async def problem(response: ClientResponse, status: int) -> dict[str, Any]:
    """The problem body, after checking the RFC 9457 shape every error response has."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    return body


async def validation_problem(response: ClientResponse) -> dict[str, str]:
    """A 400 with an ``errors`` list of ``{field, message}``; returns messages by field."""
    body = await problem(response, 400)
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    for error in errors:
        assert set(error) == {"field", "message"}
        assert isinstance(error["message"], str) and error["message"]
    return {error["field"]: error["message"] for error in errors}


async def post_partner(client: Client, name: str = "Acme Brokers", **extra: Any) -> dict:
    """Create a partner and expect 201; the body of the answer."""
    response = await client.post("/partners", json={"name": name, **extra}, headers=auth())
    assert response.status == 201, await response.text()
    body: dict = await response.json()
    return body


async def create_partner(client: Client, name: str = "Acme Brokers", **extra: Any) -> str:
    """Create a partner; its partnerUniqueId."""
    return str((await post_partner(client, name, **extra))["partnerUniqueId"])


async def put_callback(
    client: Client,
    partner: str,
    notification_type: int = 1,
    url: str = "https://example.com/hook",
    *,
    status: int | None = None,
    **fields: Any,
) -> dict:
    """Callback Update; expects ``status`` (by default 200 or 201) and returns the body of the
    answer (with signingSecret when created)."""
    response = await client.put(
        f"/partners/{partner}/callbacks/{notification_type}",
        json={"url": url, **fields},
        headers=auth("callbacks:write"),
    )
    expected = (status,) if status is not None else (200, 201)
    assert response.status in expected, await response.text()
    body: dict = await response.json()
    return body


async def get_callback(client: TestClient, partner: str, notification_type: int) -> dict:
    response = await client.get(
        f"/partners/{partner}/callbacks/{notification_type}", headers=auth("callbacks:read")
    )
    assert response.status == 200, await response.text()
    body: dict = await response.json()
    return body


async def post_echo(
    client: TestClient,
    partner: str,
    notification_type: int,
    body: dict | bytes,
    key: str | None = None,
) -> ClientResponse:
    """POST to Callback Echo; ``body`` is sent as is when it is bytes."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**auth("notifications:emit"), **JSON}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(
        f"/partners/{partner}/callbacks/{notification_type}/echo", data=raw, headers=headers
    )


async def emit(
    client: TestClient,
    partner: str,
    notification_type: int,
    body: dict | bytes,
    key: str | None = None,
) -> str:
    """Emit and expect 202; the notificationId."""
    response = await post_echo(client, partner, notification_type, body, key)
    assert response.status == 202, await response.text()
    accepted = await response.json()
    assert accepted["status"] == "queued"
    return str(accepted["notificationId"])


async def notification(client: TestClient, partner: str, notification_id: str) -> dict:
    response = await client.get(
        f"/partners/{partner}/notifications/{notification_id}", headers=auth("deliveries:read")
    )
    assert response.status == 200, await response.text()
    body: dict = await response.json()
    return body


async def log_page(client: TestClient, partner: str, **params: Any) -> dict:
    response = await client.get(
        f"/partners/{partner}/notifications",
        params={k: str(v) for k, v in params.items()},
        headers=auth("deliveries:read"),
    )
    assert response.status == 200, await response.text()
    body: dict = await response.json()
    return body


async def settled(client: TestClient, partner: str, notification_id: str, status: str) -> dict:
    """Wait until the notification has ``status`` in the log; its detail."""
    return await eventually(
        lambda: notification(client, partner, notification_id),
        lambda detail: detail["status"] == status,
    )
