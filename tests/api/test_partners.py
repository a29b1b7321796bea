"""Partner management and the notification type catalogue, over HTTP against a real database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jsonschema
import pytest
from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, post_partner, problem
from tests.support.tokens import auth

ADMIN = auth("partners:admin")


async def test_create_partner_assigns_an_id(client: TestClient) -> None:
    before = datetime.now(UTC)
    created = await post_partner(client, "Acme Brokers")
    assert set(created) == {"partnerUniqueId", "name", "createdAt"}
    assert created["name"] == "Acme Brokers"
    uuid.UUID(created["partnerUniqueId"])
    created_at = datetime.fromisoformat(created["createdAt"])
    assert created_at.tzinfo is not None
    assert abs(created_at - before) < timedelta(minutes=1)


async def test_create_partner_with_its_own_id(client: TestClient) -> None:
    chosen = str(uuid.uuid4())
    created = await post_partner(client, "Chosen", partnerUniqueId=chosen)
    assert created["partnerUniqueId"] == chosen
    fetched = await client.get(f"/partners/{chosen}", headers=ADMIN)
    assert fetched.status == 200
    assert await fetched.json() == created


async def test_name_of_200_characters_is_accepted(client: TestClient) -> None:
    created = await post_partner(client, "n" * 200)
    assert created["name"] == "n" * 200


async def test_duplicate_id_is_409_and_keeps_the_first(client: TestClient) -> None:
    chosen = str(uuid.uuid4())
    await post_partner(client, "First", partnerUniqueId=chosen)
    again = await client.post(
        "/partners", json={"name": "Second", "partnerUniqueId": chosen}, headers=ADMIN
    )
    body = await problem(again, 409)
    assert body["detail"] == "a partner with this id already exists"
    fetched = await (await client.get(f"/partners/{chosen}", headers=ADMIN)).json()
    assert fetched["name"] == "First"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "n" * 201}, "name"),
        ({}, "name"),
        ({"name": None}, "name"),
        ({"name": "Acme", "nickname": "A"}, "nickname"),
        ({"name": "Acme", "partnerUniqueId": "not-a-uuid"}, "partnerUniqueId"),
    ],
    ids=["empty", "too-long", "missing", "null", "unknown-field", "bad-id"],
)
async def test_invalid_partner_is_400_and_names_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/partners", json=body, headers=ADMIN)
    problem_body = await problem(response, 400)
    assert field in [error["field"] for error in problem_body["errors"]]
    listing = await (await client.get("/partners", headers=ADMIN)).json()
    assert listing["total"] == 0


async def test_get_unknown_partner_is_404(client: TestClient) -> None:
    response = await client.get(f"/partners/{uuid.uuid4()}", headers=ADMIN)
    assert (await problem(response, 404))["detail"] == "partner not found"


async def test_get_partner_with_malformed_id_is_400(client: TestClient) -> None:
    response = await client.get("/partners/not-a-uuid", headers=ADMIN)
    body = await problem(response, 400)
    assert body["errors"] == [{"field": "partnerUniqueID", "message": "must be a UUID"}]


async def test_list_partners_in_creation_order(client: TestClient) -> None:
    created = [await post_partner(client, f"Partner {i}") for i in range(3)]
    response = await client.get("/partners", headers=ADMIN)
    assert response.status == 200
    page = await response.json()
    assert page["items"] == created
    assert (page["offset"], page["limit"], page["total"]) == (0, 20, 3)


async def test_partner_pages_of_one_cover_every_partner_once(client: TestClient) -> None:
    created = [await create_partner(client, f"P{i}") for i in range(3)]
    seen = []
    for offset in range(3):
        response = await client.get(f"/partners?limit=1&offset={offset}", headers=ADMIN)
        page = await response.json()
        assert (page["offset"], page["limit"], page["total"]) == (offset, 1, 3)
        assert len(page["items"]) == 1
        seen.append(page["items"][0]["partnerUniqueId"])
    assert seen == created


async def test_limit_100_returns_everything_up_to_100(client: TestClient) -> None:
    for i in range(3):
        await post_partner(client, f"P{i}")
    page = await (await client.get("/partners?limit=100", headers=ADMIN)).json()
    assert (len(page["items"]), page["limit"], page["total"]) == (3, 100, 3)


async def test_offset_beyond_total_is_an_empty_page_with_the_total(client: TestClient) -> None:
    for i in range(2):
        await post_partner(client, f"P{i}")
    response = await client.get("/partners?offset=5&limit=10", headers=ADMIN)
    assert response.status == 200
    assert await response.json() == {"items": [], "offset": 5, "limit": 10, "total": 2}


async def test_empty_partner_list(client: TestClient) -> None:
    response = await client.get("/partners", headers=ADMIN)
    assert await response.json() == {"items": [], "offset": 0, "limit": 20, "total": 0}


async def test_delete_partner_removes_it_and_its_callbacks(
    client: TestClient, database: str
) -> None:
    partner = await create_partner(client)
    other = await create_partner(client, "Other")
    for owner in (partner, other):
        for kind in (1, 2):
            put = await client.put(
                f"/partners/{owner}/callbacks/{kind}",
                json={"url": "https://example.com/hook"},
                headers=ADMIN,
            )
            assert put.status == 201
    deleted = await client.delete(f"/partners/{partner}", headers=ADMIN)
    assert deleted.status == 204
    assert await deleted.read() == b""
    assert (await client.get(f"/partners/{partner}", headers=ADMIN)).status == 404
    callbacks = await client.get(f"/partners/{partner}/callbacks", headers=ADMIN)
    assert (await problem(callbacks, 404))["detail"] == "partner not found"
    connection = await asyncpg.connect(database)
    try:
        rows = await connection.fetch("SELECT partner_id FROM callbacks")
    finally:
        await connection.close()
    assert [str(row["partner_id"]) for row in rows] == [other, other]


async def test_delete_unknown_partner_is_404(client: TestClient) -> None:
    response = await client.delete(f"/partners/{uuid.uuid4()}", headers=ADMIN)
    assert (await problem(response, 404))["detail"] == "partner not found"


async def test_delete_partner_twice_is_404_the_second_time(client: TestClient) -> None:
    partner = await create_partner(client)
    assert (await client.delete(f"/partners/{partner}", headers=ADMIN)).status == 204
    assert (await client.delete(f"/partners/{partner}", headers=ADMIN)).status == 404


EXPECTED_TYPES = {1: "WorkflowStateChange", 2: "Notes", 3: "Document"}
SAMPLE_PAYLOADS: dict[int, dict[str, Any]] = {
    1: {
        "processUniqueId": str(uuid.uuid4()),
        "statusId": 3,
        "statusDescription": "Approved",
        "changedAt": "2024-05-01T10:00:00Z",
    },
    2: {
        "simulationUniqueId": str(uuid.uuid4()),
        "noteUniqueId": str(uuid.uuid4()),
        "subject": "Call back",
        "text": "Please call the client.",
        "createdAt": "2024-05-01T10:00:00Z",
    },
    3: {
        "processUniqueId": str(uuid.uuid4()),
        "documentUniqueId": str(uuid.uuid4()),
        "documentTypeId": 7,
        "fileName": "offer.pdf",
        "action": "created",
        "occurredAt": "2024-05-01T10:00:00Z",
    },
}


async def test_notification_types_list_ids_names_and_payload_schemas(client: TestClient) -> None:
    # Any valid token will do: even a partner-bound one without any scope.
    response = await client.get("/notification-types", headers=auth("", partner=uuid.uuid4()))
    assert response.status == 200
    items = (await response.json())["items"]
    assert {item["id"]: item["name"] for item in items} == EXPECTED_TYPES
    for item in items:
        assert set(item) == {"id", "name", "schema"}
        schema = item["schema"]
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(SAMPLE_PAYLOADS[item["id"]])
        assert not validator.is_valid({**SAMPLE_PAYLOADS[item["id"]], "unexpected": 1})


async def test_notification_types_need_a_token(client: TestClient) -> None:
    response = await client.get("/notification-types")
    await problem(response, 401)
