"""OAuth2 client credentials against a real local token server: one token request for many
concurrent deliveries, refreshed when it expires or when the partner refuses it, and a token
endpoint that fails leaves the notification retrying with ``auth_failed`` in its log."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, emit, notification, payload, put_callback, settled
from tests.support.polling import eventually
from tests.support.receiver import Receiver, status
from tests.support.token_server import (
    CLIENT_ID,
    TokenServer,
    oauth2_auth,
    running_token_server,
)
from tests.support.tokens import auth


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    async for server in running_token_server():
        yield server


def _bearer(receiver: Receiver) -> list[str]:
    return [r.headers.get("Authorization", "") for r in receiver.received]


@pytest.mark.parametrize("client_auth", ["basic", "post"])
async def test_fifty_concurrent_deliveries_share_one_token_request(
    client_with_dispatcher: TestClient,
    receiver: Receiver,
    token_server: TokenServer,
    client_auth: str,
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    created = await put_callback(
        client, partner, 2, receiver.url, auth=oauth2_auth(token_server, client_auth)
    )
    assert created["auth"]["clientSecret"] == "••••" and created["auth"]["clientId"] == CLIENT_ID
    ids = [await emit(client, partner, 2, payload(2)) for _ in range(50)]
    await receiver.wait_for(50)
    for notification_id in ids:
        await settled(client, partner, notification_id, "delivered")

    assert token_server.issued == ["token-1"]
    assert set(_bearer(receiver)) == {"Bearer token-1"}
    assert token_server.forms[0]["scope"] == "webhooks:write"


async def test_an_expiring_token_is_refreshed_and_a_refused_one_is_refreshed_once(
    client_with_dispatcher: TestClient, receiver: Receiver, token_server: TokenServer
) -> None:
    client = client_with_dispatcher
    token_server.lifetime = 1  # used until a tenth of a second before it expires
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url, auth=oauth2_auth(token_server))
    first = await emit(client, partner, 2, payload(2))
    await settled(client, partner, first, "delivered")

    async def issued_after_expiry() -> list[str]:
        await settled(client, partner, await emit(client, partner, 2, payload(2)), "delivered")
        return token_server.issued

    await eventually(issued_after_expiry, lambda issued: len(issued) >= 2, timeout=10)
    assert _bearer(receiver)[-1] == f"Bearer {token_server.issued[-1]}"

    # The partner refuses the token it has: one refresh, one retry, within the same attempt.
    token_server.lifetime = 3600
    receiver.responses = [status(401)]
    before = len(token_server.issued)
    refused = await emit(client, partner, 2, payload(2))
    detail = await settled(client, partner, refused, "delivered")
    assert len(token_server.issued) == before + 1
    assert detail["attempts"] == 1
    assert _bearer(receiver)[-2:] == [
        f"Bearer {token_server.issued[-2]}",
        f"Bearer {token_server.issued[-1]}",
    ]


async def test_a_failing_token_endpoint_leaves_the_notification_retrying_with_auth_failed(
    client_with_dispatcher: TestClient, receiver: Receiver, token_server: TokenServer
) -> None:
    client = client_with_dispatcher
    token_server.failing = 500
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url, auth=oauth2_auth(token_server))
    notification_id = await emit(client, partner, 2, payload(2))

    detail = await eventually(
        lambda: notification(client, partner, notification_id),
        lambda found: len(found["attemptLog"]) >= 2,
    )
    assert {a["error"] for a in detail["attemptLog"]} == {
        "auth_failed: token endpoint answered 500"
    }
    assert receiver.received == []  # the partner was never called without its token
    failed = await settled(client, partner, notification_id, "failed")
    assert failed["failureReason"] == "auth_failed"
    assert "server_error" not in str(failed)  # nothing of the token endpoint's body


async def test_a_token_url_the_url_guard_refuses_is_refused_at_registration(
    client: TestClient, partner: str
) -> None:
    body = {
        "url": "https://partner.example/hook",
        "auth": {
            "type": "oauth2_client_credentials",
            "tokenUrl": "http://10.0.0.7/token",
            "clientId": "a",
            "clientSecret": "b",
        },
    }
    response = await client.put(f"/partners/{partner}/callbacks/2", json=body, headers=auth())
    assert response.status == 400
    fields = {e["field"] for e in (await response.json())["errors"]}
    assert fields == {"auth.tokenUrl"}
