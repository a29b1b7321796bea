"""The exactly-one-subject rule is reported even when other fields are invalid too."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.conftest import auth


async def test_both_ids_named_alongside_other_field_errors(
    client: TestClient, partner: str
) -> None:
    await client.put(
        f"/partners/{partner}/callbacks/1",
        json={"url": "https://example.com/hook"},
        headers=auth("callbacks:write"),
    )
    payload = {
        "processUniqueId": "8e6a1a8c-56b6-4b0e-9d3a-3f0c2f0e9d11",
        "simulationUniqueId": "0b5c1d5e-7d1e-4f5e-8c1d-2a3b4c5d6e7f",
        "statusId": "not a number",
        "statusDescription": "Approved",
        "changedAt": "2026-01-01T00:00:00Z",
    }
    response = await client.post(
        f"/partners/{partner}/callbacks/1/echo", json=payload, headers=auth("notifications:emit")
    )
    assert response.status == 400
    fields = {error["field"] for error in (await response.json())["errors"]}
    assert {"processUniqueId", "simulationUniqueId", "statusId"} <= fields
