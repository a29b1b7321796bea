"""Setting the scene for delivery tests through the public API: partners, callbacks, emissions,
and reading the delivery log back."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import auth
from tests.support.polling import eventually

JSON = {"Content-Type": "application/json"}
FINAL = frozenset({"delivered", "failed", "cancelled"})


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


async def create_partner(client: TestClient, name: str = "Acme Brokers") -> str:
    response = await client.post("/partners", json={"name": name}, headers=auth())
    assert response.status == 201, await response.text()
    return str((await response.json())["partnerUniqueId"])


async def put_callback(
    client: TestClient, partner: str, notification_type: int, url: str, **fields: Any
) -> dict:
    """Create or update the callback; the body of the answer (with signingSecret if created)."""
    response = await client.put(
        f"/partners/{partner}/callbacks/{notification_type}",
        json={"url": url, **fields},
        headers=auth("callbacks:write"),
    )
    assert response.status in (200, 201), await response.text()
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
