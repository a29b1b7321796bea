"""After a secret rotation the dispatcher signs with both secrets, so the partner can switch
over; checked with the real ``standardwebhooks`` package."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.api import create_partner, emit, payload, put_callback, settled
from tests.support.receiver import Receiver
from tests.support.tokens import auth


async def test_after_rotation_both_secrets_verify(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    old = (await put_callback(client, partner, 1, receiver.url))["signingSecret"]
    before = await emit(client, partner, 1, payload(1))
    await settled(client, partner, before, "delivered")

    response = await client.post(
        f"/partners/{partner}/callbacks/1/secret/rotate", headers=auth("callbacks:write")
    )
    assert response.status == 200
    new = (await response.json())["signingSecret"]
    after = await emit(client, partner, 1, payload(1))
    await settled(client, partner, after, "delivered")

    first, second = receiver.received
    assert new != old
    assert len(first.headers["webhook-signature"].split(" ")) == 1
    Webhook(old).verify(first.body, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(first.body, first.headers)
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(second.body, second.headers)
    Webhook(new).verify(second.body, second.headers)
