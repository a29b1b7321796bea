"""Callback Update, Delete, List, Get and secret; and the partner isolation rule, over HTTP."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.support.api import create_partner, problem, put_callback
from tests.support.tokens import auth

ADMIN = auth("partners:admin")
READ = auth("callbacks:read")
WRITE = auth("callbacks:write")
CALLBACK_FIELDS = {
    "partnerUniqueId",
    "notificationType",
    "notificationTypeName",
    "url",
    "enabled",
    "description",
    "orderedDelivery",
    "disabledReason",
    "headers",
    "auth",
    "tls",
    "signature",
    "publicKey",
    "maxInFlight",
    "maxPerSecond",
    "health",
    "createdAt",
    "updatedAt",
}
TYPE_NAMES = {1: "WorkflowStateChange", 2: "Notes", 3: "Document"}


def assert_signing_secret(secret: str) -> None:
    assert secret.startswith("whsec_")
    raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    assert 24 <= len(raw) <= 32


# Callback Update


async def test_create_answers_201_with_the_callback_and_its_secret(
    client: TestClient, partner: str
) -> None:
    created = await put_callback(
        client, partner, 1, url="https://broker.example/hooks?a=1", status=201
    )
    assert set(created) == CALLBACK_FIELDS | {"signingSecret"}
    assert created["partnerUniqueId"] == partner
    assert created["notificationType"] == 1
    assert created["notificationTypeName"] == "WorkflowStateChange"
    assert created["url"] == "https://broker.example/hooks?a=1"
    assert created["enabled"] is True
    assert created["description"] is None
    assert created["createdAt"] == created["updatedAt"]
    assert_signing_secret(created["signingSecret"])


async def test_each_callback_gets_its_own_secret(client: TestClient, partner: str) -> None:
    first = await put_callback(client, partner, 1, status=201)
    second = await put_callback(client, partner, 2, status=201)
    assert first["signingSecret"] != second["signingSecret"]


async def test_update_answers_200_without_the_secret_and_moves_updated_at(
    client: TestClient, partner: str
) -> None:
    created = await put_callback(client, partner, 2, url="https://one.example/hook", status=201)
    updated = await put_callback(client, partner, 2, status=200, url="https://two.example/hook")
    assert set(updated) == CALLBACK_FIELDS
    assert updated["url"] == "https://two.example/hook"
    assert updated["createdAt"] == created["createdAt"]
    assert datetime.fromisoformat(updated["updatedAt"]) > datetime.fromisoformat(
        created["updatedAt"]
    )
    fetched = await client.get(f"/partners/{partner}/callbacks/2", headers=READ)
    assert await fetched.json() == updated


async def test_update_keeps_the_secret(client: TestClient, partner: str) -> None:
    created = await put_callback(client, partner, 1, status=201)
    await put_callback(client, partner, 1, status=200, url="https://other.example/hook")
    secret = await client.get(f"/partners/{partner}/callbacks/1/secret", headers=WRITE)
    assert (await secret.json())["signingSecret"] == created["signingSecret"]


async def test_enabled_description_and_ordering_round_trip(
    client: TestClient, partner: str
) -> None:
    created = await put_callback(
        client, partner, 3, enabled=False, description="documents", orderedDelivery=True, status=201
    )
    assert (created["enabled"], created["description"], created["orderedDelivery"]) == (
        False,
        "documents",
        True,
    )
    fetched = await (await client.get(f"/partners/{partner}/callbacks/3", headers=READ)).json()
    assert (fetched["enabled"], fetched["description"], fetched["orderedDelivery"]) == (
        False,
        "documents",
        True,
    )
    updated = await put_callback(
        client, partner, 3, status=200, enabled=True, description="docs", orderedDelivery=False
    )
    assert (updated["enabled"], updated["description"], updated["orderedDelivery"]) == (
        True,
        "docs",
        False,
    )


@pytest.mark.parametrize(("kind", "ordered"), [(1, True), (2, False), (3, False)])
async def test_ordered_delivery_default_depends_on_the_type(
    client: TestClient, partner: str, kind: int, ordered: bool
) -> None:
    created = await put_callback(client, partner, kind, status=201)
    assert created["orderedDelivery"] is ordered
    assert created["notificationTypeName"] == TYPE_NAMES[kind]


async def test_update_without_ordered_delivery_keeps_the_choice(
    client: TestClient, partner: str
) -> None:
    await put_callback(client, partner, 1, orderedDelivery=False, status=201)
    updated = await put_callback(client, partner, 1, status=200, url="https://new.example/")
    assert updated["orderedDelivery"] is False


async def test_url_of_exactly_2048_characters_is_accepted(client: TestClient, partner: str) -> None:
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    created = await put_callback(client, partner, 1, url=url, status=201)
    assert created["url"] == url


async def test_update_for_unknown_partner_is_404(client: TestClient) -> None:
    response = await client.put(
        f"/partners/{uuid.uuid4()}/callbacks/1",
        json={"url": "https://example.com/hook"},
        headers=WRITE,
    )
    assert (await problem(response, 404))["detail"] == "partner not found"


# Callback Delete


async def test_delete_answers_204_then_404(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, status=201)
    await put_callback(client, partner, 2, status=201)
    deleted = await client.delete(f"/partners/{partner}/callbacks/1", headers=WRITE)
    assert deleted.status == 204
    assert await deleted.read() == b""
    gone = await client.get(f"/partners/{partner}/callbacks/1", headers=READ)
    assert (await problem(gone, 404))["detail"] == "callback not found"
    again = await client.delete(f"/partners/{partner}/callbacks/1", headers=WRITE)
    assert (await problem(again, 404))["detail"] == "callback not found"
    kept = await client.get(f"/partners/{partner}/callbacks/2", headers=READ)
    assert kept.status == 200


async def test_delete_for_unknown_partner_is_404(client: TestClient) -> None:
    response = await client.delete(f"/partners/{uuid.uuid4()}/callbacks/1", headers=WRITE)
    assert (await problem(response, 404))["detail"] == "partner not found"


async def test_a_deleted_callback_can_be_created_again_with_a_new_secret(
    client: TestClient, partner: str
) -> None:
    first = await put_callback(client, partner, 1, status=201)
    assert (await client.delete(f"/partners/{partner}/callbacks/1", headers=WRITE)).status == 204
    second = await put_callback(client, partner, 1, status=201)
    assert second["signingSecret"] != first["signingSecret"]


# Callback List and Get


async def test_list_is_ordered_by_notification_type(client: TestClient, partner: str) -> None:
    for kind in (3, 1, 2):
        await put_callback(client, partner, kind, url=f"https://example.com/{kind}", status=201)
    response = await client.get(f"/partners/{partner}/callbacks", headers=READ)
    assert response.status == 200
    page = await response.json()
    assert [item["notificationType"] for item in page["items"]] == [1, 2, 3]
    assert [item["url"] for item in page["items"]] == [
        f"https://example.com/{k}" for k in (1, 2, 3)
    ]
    assert all(set(item) == CALLBACK_FIELDS for item in page["items"])
    assert (page["offset"], page["limit"], page["total"]) == (0, 20, 3)


async def test_list_shows_only_this_partners_callbacks(client: TestClient, partner: str) -> None:
    other_id = await create_partner(client, "Other")
    await put_callback(client, other_id, 1, status=201)
    await put_callback(client, partner, 2, status=201)
    page = await (await client.get(f"/partners/{partner}/callbacks", headers=READ)).json()
    assert [(i["partnerUniqueId"], i["notificationType"]) for i in page["items"]] == [(partner, 2)]
    assert page["total"] == 1


async def test_list_pages_of_one(client: TestClient, partner: str) -> None:
    for kind in (1, 2, 3):
        await put_callback(client, partner, kind, status=201)
    seen = []
    for offset in range(3):
        response = await client.get(
            f"/partners/{partner}/callbacks?offset={offset}&limit=1", headers=READ
        )
        page = await response.json()
        assert (page["offset"], page["limit"], page["total"], len(page["items"])) == (
            offset,
            1,
            3,
            1,
        )
        seen.append(page["items"][0]["notificationType"])
    assert seen == [1, 2, 3]


async def test_list_limit_100(client: TestClient, partner: str) -> None:
    for kind in (1, 2, 3):
        await put_callback(client, partner, kind, status=201)
    page = await (await client.get(f"/partners/{partner}/callbacks?limit=100", headers=READ)).json()
    assert (len(page["items"]), page["limit"], page["total"]) == (3, 100, 3)


async def test_list_offset_beyond_total_is_empty_with_the_total(
    client: TestClient, partner: str
) -> None:
    await put_callback(client, partner, 1, status=201)
    await put_callback(client, partner, 2, status=201)
    response = await client.get(f"/partners/{partner}/callbacks?offset=2", headers=READ)
    assert await response.json() == {"items": [], "offset": 2, "limit": 20, "total": 2}
    response = await client.get(f"/partners/{partner}/callbacks?offset=50", headers=READ)
    assert await response.json() == {"items": [], "offset": 50, "limit": 20, "total": 2}


async def test_list_of_a_partner_without_callbacks_is_empty(
    client: TestClient, partner: str
) -> None:
    response = await client.get(f"/partners/{partner}/callbacks", headers=READ)
    assert await response.json() == {"items": [], "offset": 0, "limit": 20, "total": 0}


async def test_list_for_unknown_partner_is_404(client: TestClient) -> None:
    response = await client.get(f"/partners/{uuid.uuid4()}/callbacks", headers=READ)
    assert (await problem(response, 404))["detail"] == "partner not found"


async def test_get_one_callback(client: TestClient, partner: str) -> None:
    created = await put_callback(client, partner, 2, description="notes", status=201)
    response = await client.get(f"/partners/{partner}/callbacks/2", headers=READ)
    assert response.status == 200
    created.pop("signingSecret")
    assert await response.json() == created


async def test_get_missing_callback_is_404(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, status=201)
    response = await client.get(f"/partners/{partner}/callbacks/2", headers=READ)
    assert (await problem(response, 404))["detail"] == "callback not found"
    unknown = await client.get(f"/partners/{uuid.uuid4()}/callbacks/1", headers=READ)
    assert (await problem(unknown, 404))["detail"] == "partner not found"


async def test_secret_is_the_one_given_on_create(client: TestClient, partner: str) -> None:
    created = await put_callback(client, partner, 1, status=201)
    response = await client.get(f"/partners/{partner}/callbacks/1/secret", headers=WRITE)
    assert response.status == 200
    assert await response.json() == {"signingSecret": created["signingSecret"], "publicKey": None}


async def test_secret_needs_callbacks_write(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, status=201)
    response = await client.get(f"/partners/{partner}/callbacks/1/secret", headers=READ)
    body = await problem(response, 403)
    assert "callbacks:write" in body["detail"]


async def test_secret_of_missing_callback_is_404(client: TestClient, partner: str) -> None:
    response = await client.get(f"/partners/{partner}/callbacks/1/secret", headers=WRITE)
    assert (await problem(response, 404))["detail"] == "callback not found"


async def test_rotation_needs_callbacks_write(client: TestClient, partner: str) -> None:
    await put_callback(client, partner, 1, "https://broker.example/hook")
    path = f"/partners/{partner}/callbacks/1/secret/rotate"

    assert (await client.post(path, headers=auth("callbacks:read"))).status == 403
    assert (
        await client.post(
            f"/partners/{partner}/callbacks/2/secret/rotate", headers=auth("callbacks:write")
        )
    ).status == 404


# Partner isolation: a token bound to partner A never touches partner B.

ALL_PARTNER_SCOPES = (
    "callbacks:read callbacks:write notifications:emit deliveries:read deliveries:write"
)


def workflow_change() -> dict[str, Any]:
    return {
        "processUniqueId": str(uuid.uuid4()),
        "statusId": 2,
        "statusDescription": "Submitted",
        "changedAt": "2024-05-01T10:00:00Z",
    }


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {p}: the partner, {n}: one of its notifications
    scope: str
    success: int
    body: dict[str, Any] | None = None


CASES = {
    "list-callbacks": Case("GET", "/partners/{p}/callbacks", "callbacks:read", 200),
    "get-callback": Case("GET", "/partners/{p}/callbacks/1", "callbacks:read", 200),
    "put-callback": Case(
        "PUT",
        "/partners/{p}/callbacks/1",
        "callbacks:write",
        200,
        {"url": "https://changed.example/hook"},
    ),
    "delete-callback": Case("DELETE", "/partners/{p}/callbacks/1", "callbacks:write", 204),
    "secret": Case("GET", "/partners/{p}/callbacks/1/secret", "callbacks:write", 200),
    "rotate": Case("POST", "/partners/{p}/callbacks/1/secret/rotate", "callbacks:write", 200),
    "echo": Case(
        "POST", "/partners/{p}/callbacks/1/echo", "notifications:emit", 202, workflow_change()
    ),
    "list-notifications": Case("GET", "/partners/{p}/notifications", "deliveries:read", 200),
    "get-notification": Case("GET", "/partners/{p}/notifications/{n}", "deliveries:read", 200),
    "redeliver": Case("POST", "/partners/{p}/notifications/{n}/redeliver", "deliveries:write", 202),
    "redeliver-failed": Case(
        "POST",
        "/partners/{p}/notifications/redeliver-failed",
        "deliveries:write",
        202,
        {"since": "2020-01-01T00:00:00Z"},
    ),
}


@dataclass(frozen=True)
class Tenant:
    partner: str
    notification: str


async def tenant(client: TestClient, name: str) -> Tenant:
    """A partner with a callback for type 1 and one queued notification."""
    partner = await create_partner(client, name)
    await put_callback(client, partner, 1, url=f"https://{name.lower()}.example/hook", status=201)
    echo = await client.post(
        f"/partners/{partner}/callbacks/1/echo", json=workflow_change(), headers=ADMIN
    )
    assert echo.status == 202, await echo.text()
    return Tenant(partner, (await echo.json())["notificationId"])


async def call(
    client: TestClient, case: Case, target: Tenant, headers: dict[str, str]
) -> ClientResponse:
    path = case.path.format(p=target.partner, n=target.notification)
    return await client.request(case.method, path, json=case.body, headers=headers)


async def snapshot(client: TestClient, target: Tenant) -> list[Any]:
    """Everything the cases could change about a partner, read with an admin token."""
    base = f"/partners/{target.partner}"
    paths = [
        f"{base}/callbacks",
        f"{base}/callbacks/1/secret",
        f"{base}/notifications",
        f"{base}/notifications/{target.notification}",
    ]
    return [await (await client.get(path, headers=ADMIN)).json() for path in paths]


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_token_bound_to_a_gets_403_on_b_and_works_on_a(
    client: TestClient, case: Case
) -> None:
    a, b = await tenant(client, "Alpha"), await tenant(client, "Beta")
    bound_to_a = auth(ALL_PARTNER_SCOPES, partner=a.partner)
    before = await snapshot(client, b)
    refused = await call(client, case, b, bound_to_a)
    assert (await problem(refused, 403))["detail"] == "the token is bound to another partner"
    assert await snapshot(client, b) == before
    allowed = await call(client, case, a, bound_to_a)
    assert allowed.status == case.success, await allowed.text()


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_service_token_needs_the_scope_and_then_works_for_any_partner(
    client: TestClient, case: Case
) -> None:
    target = await tenant(client, "Gamma")
    others = " ".join(s for s in ALL_PARTNER_SCOPES.split() if s != case.scope)
    before = await snapshot(client, target)
    refused = await call(client, case, target, auth(others))
    assert (await problem(refused, 403))["detail"] == f"the token lacks the scope {case.scope}"
    assert await snapshot(client, target) == before
    allowed = await call(client, case, target, auth(case.scope))
    assert allowed.status == case.success, await allowed.text()


async def test_partner_bound_token_cannot_manage_partners(client: TestClient) -> None:
    a, b = await tenant(client, "Alpha"), await tenant(client, "Beta")
    # Even with the admin scope, a token bound to a partner is not a partner manager.
    bound = auth("partners:admin " + ALL_PARTNER_SCOPES, partner=a.partner)
    created = await client.post("/partners", json={"name": "Sneaky"}, headers=bound)
    await problem(created, 403)
    await problem(await client.get("/partners", headers=bound), 403)
    await problem(await client.get(f"/partners/{b.partner}", headers=bound), 403)
    await problem(await client.delete(f"/partners/{b.partner}", headers=bound), 403)
    listing = await (await client.get("/partners", headers=ADMIN)).json()
    assert listing["total"] == 2


async def test_partner_bound_token_with_scope_cannot_reach_an_unknown_partner(
    client: TestClient,
) -> None:
    a = await tenant(client, "Alpha")
    bound = auth(ALL_PARTNER_SCOPES, partner=a.partner)
    response = await client.get(f"/partners/{uuid.uuid4()}/callbacks", headers=bound)
    await problem(response, 403)
