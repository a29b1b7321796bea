"""Every route of the route table is authorised as it declares, before its view runs.

The cases are generated from ``ROUTES``, so a route added later is checked without anyone
writing a test for it: a token lacking the declared scope gets 403, a token bound to another
partner gets 403, and no token gets 401.
"""

from __future__ import annotations

import uuid

import pytest
from aiohttp.test_utils import TestClient

from service.api.routes import ROUTES, Route
from service.api.tokens import SCOPES, Scope
from tests.support.tokens import auth

# The only routes any valid token may call, whatever its scopes: changing this set is a
# decision about access, not a detail.
ANY_TOKEN = {("GET", "/notification-types")}

SCOPED = [r for r in ROUTES if r.authenticated and r.scope is not None]
PARTNER_SCOPED = [r for r in SCOPED if r.partner_scoped]
SPANNING = [r for r in SCOPED if not r.partner_scoped]


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


def _path(route: Route, partner: uuid.UUID) -> str:
    values = {
        "partnerUniqueID": str(partner),
        "notificationType": "1",
        "notificationTypeID": "1",
        "notificationId": str(uuid.uuid4()),
        "operatorEventId": str(uuid.uuid4()),
    }
    return route.template.format(**values)


def _scopes_except(scope: str) -> str:
    return " ".join(sorted(s for s in SCOPES if s not in (scope, Scope.PARTNERS_ADMIN)))


def test_every_authenticated_route_declares_a_scope_unless_listed() -> None:
    unscoped = {(r.method, r.path) for r in ROUTES if r.authenticated and r.scope is None}
    assert unscoped == ANY_TOKEN
    assert PARTNER_SCOPED and SPANNING


@pytest.mark.parametrize("route", SCOPED, ids=_id)
async def test_a_token_without_the_declared_scope_gets_403(
    client: TestClient, route: Route
) -> None:
    assert route.scope is not None
    response = await client.request(
        route.method, _path(route, uuid.uuid4()), headers=auth(_scopes_except(route.scope))
    )
    assert response.status == 403
    assert (await response.json())["detail"] == f"the token lacks the scope {route.scope}"


@pytest.mark.parametrize("route", PARTNER_SCOPED, ids=_id)
async def test_a_token_bound_to_another_partner_gets_403(client: TestClient, route: Route) -> None:
    every_scope = " ".join(sorted(SCOPES))
    headers = auth(every_scope, partner=uuid.uuid4())
    response = await client.request(route.method, _path(route, uuid.uuid4()), headers=headers)
    assert response.status == 403
    assert (await response.json())["detail"] == "the token is bound to another partner"


@pytest.mark.parametrize("route", SPANNING, ids=_id)
async def test_a_partner_bound_token_gets_403_on_a_route_over_all_partners(
    client: TestClient, route: Route
) -> None:
    every_scope = " ".join(sorted(SCOPES))
    response = await client.request(
        route.method, _path(route, uuid.uuid4()), headers=auth(every_scope, partner=uuid.uuid4())
    )
    assert response.status == 403
    detail = (await response.json())["detail"]
    assert "bound to a partner" in detail and "another partner" not in detail


@pytest.mark.parametrize("route", [r for r in ROUTES if r.authenticated], ids=_id)
async def test_no_token_gets_401(client: TestClient, route: Route) -> None:
    response = await client.request(route.method, _path(route, uuid.uuid4()))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("route", [r for r in ROUTES if not r.authenticated], ids=_id)
async def test_a_public_route_needs_no_token(client: TestClient, route: Route) -> None:
    response = await client.request(route.method, _path(route, uuid.uuid4()))
    assert response.status == 200
