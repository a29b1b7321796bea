from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import auth


async def test_create_and_list_callback(client: TestClient, partner: str) -> None:
    response = await client.put(
        f"/partners/{partner}/callbacks/1",
        json={"url": "https://example.com/hook"},
        headers=auth("callbacks:write"),
    )
    assert response.status == 201
    created = await response.json()
    assert created["signingSecret"].startswith("whsec_")
    listing = await client.get(f"/partners/{partner}/callbacks", headers=auth("callbacks:read"))
    assert (await listing.json())["total"] == 1
