"""Partner management (scope partners:admin)."""

from __future__ import annotations

from aiohttp import web

from service.api.app_keys import POOL
from service.api.auth import Caller
from service.api.parsing import json_body, query
from service.api.routes import route
from service.api.tokens import Scope
from service.core import partners
from service.core.schemas import (
    Pagination,
    Partner,
    PartnerCreate,
    PartnerPage,
)

ADMIN = Scope.PARTNERS_ADMIN


@route(
    "POST",
    "/partners",
    summary="Create a partner",
    tag="partners",
    scope=ADMIN,
    body=PartnerCreate,
    response=Partner,
    status=201,
    extra_statuses={409: "A partner with this id exists"},
)
async def create_partner(request: web.Request, caller: Caller) -> web.Response:
    body = await json_body(request, PartnerCreate)
    partner = await partners.create_partner(
        request.app[POOL], body.name, body.partner_unique_id, caller.actor
    )
    return web.json_response(partner.dump(), status=201)


@route(
    "GET",
    "/partners",
    summary="List partners",
    tag="partners",
    scope=ADMIN,
    query=Pagination,
    response=PartnerPage,
)
async def list_partners(request: web.Request, caller: Caller) -> web.Response:
    page = query(request, Pagination)
    result = await partners.list_partners(request.app[POOL], page.offset, page.limit)
    return web.json_response(result.dump())


@route(
    "GET",
    "/partners/{partnerUniqueID}",
    summary="Get a partner",
    tag="partners",
    scope=ADMIN,
    response=Partner,
    extra_statuses={404: "Unknown partner"},
)
async def get_partner(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    partner = await partners.get_partner(request.app[POOL], partner_id)
    return web.json_response(partner.dump())


@route(
    "DELETE",
    "/partners/{partnerUniqueID}",
    summary="Delete a partner and its callbacks",
    tag="partners",
    scope=ADMIN,
    status=204,
    extra_statuses={404: "Unknown partner"},
)
async def delete_partner(request: web.Request, caller: Caller) -> web.Response:
    partner_id = caller.partner_id
    await partners.delete_partner(request.app[POOL], partner_id, caller.actor)
    return web.Response(status=204)
