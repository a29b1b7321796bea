"""An echo repeated with its Idempotency-Key is delivered once."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, emit, log_page, payload, put_callback, settled
from tests.support.receiver import Receiver


async def test_repeated_key_returns_the_first_answer_and_delivers_once(
    client_with_dispatcher: TestClient, receiver: Receiver
) -> None:
    client = client_with_dispatcher
    partner = await create_partner(client)
    await put_callback(client, partner, 2, receiver.url)
    body = json.dumps(payload(2)).encode()

    first = await emit(client, partner, 2, body, key="order-42")
    await settled(client, partner, first, "delivered")
    again = await emit(client, partner, 2, body, key="order-42")
    marker = await emit(client, partner, 2, payload(2))  # delivered after any second copy
    await settled(client, partner, marker, "delivered")

    assert again == first
    ids = [request.headers["webhook-id"] for request in receiver.received]
    assert ids.count(first) == 1
    assert (await log_page(client, partner))["total"] == 2
