"""Portal links: an operator (or a service of the platform) hands a partner a link that opens
its portal, and can end every session a partner has."""

from __future__ import annotations

import uuid

from aiohttp import web

from service.api.app_keys import POOL, SETTINGS
from service.api.auth import Caller
from service.api.parsing import json_body
from service.api.routes import route
from service.api.tokens import Scope
from service.core import portal_access
from service.core.portal_access import Access
from service.core.schemas import PortalLink, PortalLinkRequest, PortalSessionsRevoked

LOGIN_PATH = "/portal/login?code="


async def _issue(
    request: web.Request, caller: Caller, partner_id: uuid.UUID | None
) -> web.Response:
    body = await json_body(request, PortalLinkRequest)
    code, expires_at = await portal_access.issue_link(
        request.app[POOL], partner_id, Access(body.access), body.expires_in, caller.actor
    )
    url = request.app[SETTINGS].base_url + LOGIN_PATH + code
    return web.json_response(PortalLink(url=url, expires_at=expires_at).dump(), status=201)


@route(
    "POST",
    "/partners/{partnerUniqueID}/portal-links",
    summary="A single-use link that opens the partner's portal (read-only or manage)",
    tag="portal",
    scope=Scope.PORTAL_LINKS,
    body=PortalLinkRequest,
    response=PortalLink,
    status=201,
    extra_statuses={404: "Unknown partner"},
)
async def create_portal_link(request: web.Request, caller: Caller) -> web.Response:
    assert caller.principal is not None
    caller.principal.require_unbound()  # a partner does not mint its own links
    return await _issue(request, caller, caller.partner_id)


@route(
    "POST",
    "/portal-links",
    summary="A single-use link that opens the operator view of the portal",
    tag="portal",
    scope=Scope.PARTNERS_ADMIN,
    body=PortalLinkRequest,
    response=PortalLink,
    status=201,
)
async def create_operator_link(request: web.Request, caller: Caller) -> web.Response:
    return await _issue(request, caller, None)


@route(
    "DELETE",
    "/partners/{partnerUniqueID}/portal-sessions",
    summary="End every portal session of the partner (and its unused links)",
    tag="portal",
    scope=Scope.PARTNERS_ADMIN,
    response=PortalSessionsRevoked,
    extra_statuses={404: "Unknown partner"},
)
async def revoke_portal_sessions(request: web.Request, caller: Caller) -> web.Response:
    revoked = await portal_access.revoke_sessions(
        request.app[POOL], caller.partner_id, caller.actor
    )
    return web.json_response(PortalSessionsRevoked(revoked=revoked).dump())
