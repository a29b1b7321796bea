"""The exactly-one-subject rule is reported even when other fields are invalid too."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.support.tokens import auth


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


async def test_a_null_subject_is_refused_not_taken_for_absent(
    client: TestClient, partner: str
) -> None:
    """The schema publishes each subject as a UUID string: null is refused, naming the field."""
    await client.put(
        f"/partners/{partner}/callbacks/1",
        json={"url": "https://example.com/hook"},
        headers=auth("callbacks:write"),
    )
    payload = {
        "processUniqueId": None,
        "simulationUniqueId": "0b5c1d5e-7d1e-4f5e-8c1d-2a3b4c5d6e7f",
        "statusId": 3,
        "statusDescription": "Approved",
        "changedAt": "2026-01-01T00:00:00Z",
    }
    response = await client.post(
        f"/partners/{partner}/callbacks/1/echo", json=payload, headers=auth("notifications:emit")
    )
    assert response.status == 400
    errors = (await response.json())["errors"]
    assert [e["field"] for e in errors] == ["processUniqueId"]
    assert "leave the field out" in errors[0]["message"]
    del payload["processUniqueId"]  # left out, the same notification is accepted
    response = await client.post(
        f"/partners/{partner}/callbacks/1/echo", json=payload, headers=auth("notifications:emit")
    )
    assert response.status == 202
